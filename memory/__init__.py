"""Long-term memory of each user (facts recalled across chats) and the user accounts of password login.

`open_memory_service(settings)` builds the `MemoryService` at startup; `extract_facts` turns a finished
turn into facts for it; `UserStore` (memory.users) keeps the accounts. Nothing runs at import.
"""

from memory.embeddings import Embedder, SentenceTransformerEmbedder, as_memory_embedder
from memory.extraction import extract_facts
from memory.factory import MemoryUnavailable, open_memory_service
from memory.ids import InvalidUserId, memory_namespace, validate_user_id
from memory.prompts import format_memories
from memory.records import Fact, Memory, Remembered
from memory.service import MemoryService

__all__ = [
    "Embedder",
    "Fact",
    "InvalidUserId",
    "Memory",
    "MemoryService",
    "MemoryUnavailable",
    "Remembered",
    "SentenceTransformerEmbedder",
    "as_memory_embedder",
    "extract_facts",
    "format_memories",
    "memory_namespace",
    "open_memory_service",
    "validate_user_id",
]
