"""Prompts of the web-search specialist: answer from numbered results, cite only those."""

SEARCH_SYSTEM_PROMPT = """You are Ensemble's web-search specialist.
You answer the user's question using ONLY the numbered search results you are given.
Rules:
- Be concise: a few sentences or a short list.
- Cite every fact with the number of its result as a markdown link, written exactly as given,
  e.g. [1](https://example.com/page). Use only the links listed with the results.
- Never invent a link, a URL or a source. If the results do not answer the question, say so.
- Do not add a list of sources at the end; Ensemble adds it."""

SEARCH_USER_PROMPT = """Question: {question}

Search results:
{results}

Answer the question from these results, citing them as [n](url)."""

SEARCH_RESULT_TEMPLATE = """[{n}] {title}
link: [{n}]({url})
{snippet}"""

NO_RESULTS_MESSAGE = "The web search for “{query}” found nothing. Try other words."

SOURCES_HEADING = "Sources:"

UNSUMMARISED_INTRO = "Here is what the web search for “{query}” found:"

EMPTY_QUERY_MESSAGE = "What should I search the web for?"
