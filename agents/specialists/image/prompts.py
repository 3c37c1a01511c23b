"""Texts of the image specialist: how a request is read, and how a result is reported."""

# Leading phrases that ask for an image rather than describe it ("draw me a picture of ...").
REQUEST_PREAMBLE = (
    r"^\s*(?:please\s+)?(?:(?:can|could|would)\s+you\s+)?(?:please\s+)?"
    r"(?:(?:generate|create|draw|make|paint|render|produce|design|imagine|show)\s+(?:me\s+|us\s+)?"
    r"(?:(?:an?|the|some)\s+(?=(?:image|picture|photo|drawing|painting|illustration|render)))?"
    r"(?:(?:image|picture|photo|drawing|painting|illustration|rendering|render)s?\s+"
    r"(?:of\s+|showing\s+|depicting\s+|with\s+)?)?"
    r"|(?:an?\s+|the\s+)?(?:image|picture|photo|drawing|painting|illustration)s?\s+(?:of|showing|depicting)\s+)?"
)

RESULT_MESSAGE = "Here is the image for “{prompt}” — seed {seed}, {steps} step{plural}, {width}×{height}."

RESULT_MESSAGE_NO_SEED = (
    "Here is the image for “{prompt}” — {width}×{height}; this server ({backend}) does not take a seed "
    "or a step count, so the result cannot be reproduced exactly."
)

EMPTY_PROMPT_MESSAGE = "What should the image show? Describe it, e.g. “a red fox in fresh snow, photo”."
