"""Prompts and messages of the vision specialist (LLaVA-1.6 on SGLang by default)."""

VISION_SYSTEM_PROMPT = """You are Ensemble's vision specialist. You see the image(s) the user shared.
Answer the question about them accurately and concisely.
Rules:
- Describe only what is visible; say so when something cannot be made out.
- When there are several images, refer to them as Image 1, Image 2, ... in the order given.
- Read text in the image exactly as written when asked for it."""

IMAGE_LABEL = "Image {n}: {name}"

DEFAULT_QUESTION = "Describe this image."

NO_IMAGE_MESSAGE = (
    "There is no image in this chat yet. Attach one (PNG, JPEG, WebP or GIF) to your message and ask again."
)

SKIPPED_IMAGES_NOTE = "Not looked at: {reasons}"

UNREAD_IMAGE = (
    "“{name}” is in the chat, but I cannot look at images in this deployment: no vision model is "
    "configured. To enable it, {hint}."
)
