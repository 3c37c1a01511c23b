"""Long-term memory of each user: facts recalled across chats, shown and erased on request.

`open_memory_service(settings)` builds the `MemoryService` at startup; `extract_facts` turns a finished
turn into facts for it. Nothing runs at import.
"""

from memory.embeddings import SentenceTransformerEmbedder
from memory.extraction import extract_facts
from memory.factory import MemoryUnavailable, open_memory_service
from memory.ids import InvalidUserId, memory_namespace, validate_user_id
from memory.prompts import format_memories
from memory.records import Fact, Memory, Remembered
from memory.service import MemoryService

__all__ = [
    "Fact",
    "InvalidUserId",
    "Memory",
    "MemoryService",
    "MemoryUnavailable",
    "Remembered",
    "SentenceTransformerEmbedder",
    "extract_facts",
    "format_memories",
    "memory_namespace",
    "open_memory_service",
    "validate_user_id",
]
