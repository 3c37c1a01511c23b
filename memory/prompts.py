"""Prompts of the memory layer (formatted at run time; overridable per model through settings.prompts)."""

EXTRACT_SYSTEM_PROMPT = """You pick out facts worth remembering about the USER from a chat, for later chats.
Keep only durable facts the user stated about themselves: their name, where they live or work,
preferences (languages, tools, style, food), projects they work on, ongoing tasks and goals.
Ignore questions, small talk, anything the assistant said, and facts about other people or the world.
Write each fact as one short sentence about "the user", in English (e.g. "The user's name is …").
Give single-valued facts a snake_case key (name, home_city, employer, job_title, native_language);
otherwise key is null. Category is one of: identity, preference, project, task, other.
Reply with JSON only: {"facts": [{"text": "...", "key": "name" or null, "category": "identity"}]}.
If there is nothing worth remembering, reply {"facts": []}."""

EXTRACT_USER_PROMPT = """Chat:
{transcript}

Facts worth remembering about the user (JSON):"""

RECALLED_MEMORIES_PROMPT = """What you remember about this user from earlier chats
(use it when relevant; do not recite it unprompted):
{memories}"""


def format_memories(memories_text: list[str]) -> str:
    """The recalled memories as the system-prompt block the supervisor adds; empty when there are none."""
    if not memories_text:
        return ""
    return RECALLED_MEMORIES_PROMPT.format(memories="\n".join(f"- {text}" for text in memories_text))
