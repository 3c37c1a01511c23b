"""Routing evaluation: a labelled request set run through the supervisor's real routing decision.

`ensemble-eval` (agents.eval.cli) runs it against the configured supervisor endpoint and reports
accuracy, valid-decision rate, hops, latency and a confusion matrix per specialist.
"""
