"""A tiny, randomly initialised SDXL-architecture diffusers pipeline, built offline for tests.

Same components and wiring as stabilityai/sdxl-turbo (two CLIP text encoders, the second with a
projection; a UNet with `text_time` added conditioning; an AutoencoderKL; Euler-ancestral with
trailing timesteps), at a size that loads in a second and generates a 64×64 image in ~0.1 s on CPU.
Tokenizers are real CLIP BPE tokenizers read from vocab.json/merges.txt written here.
"""

from __future__ import annotations

import json
from pathlib import Path


def _byte_symbols() -> list[str]:
    """CLIP's byte-to-unicode table: the 256 symbols its byte-level BPE starts from."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def write_clip_tokenizer_files(directory: Path) -> int:
    """vocab.json and merges.txt of a character-level CLIP BPE; returns the vocabulary size."""
    directory.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for symbol in _byte_symbols():
        vocab[symbol] = len(vocab)
    for symbol in _byte_symbols():
        vocab[symbol + "</w>"] = len(vocab)
    (directory / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return len(vocab)


def build_tiny_sdxl(target: Path, seed: int = 0) -> Path:
    """Save the tiny pipeline (diffusers layout, model_index.json) into `target` and return it."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerAncestralDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    token_files = target.parent / f"{target.name}-tokenizer-files"
    vocab_size = write_clip_tokenizer_files(token_files)
    tokenizer = CLIPTokenizer.from_pretrained(str(token_files), model_max_length=77)
    torch.manual_seed(seed)
    text_config = CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=vocab_size,
        projection_dim=32,
        max_position_embeddings=77,
        hidden_act="gelu",
    )
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=6 * 8 + 32,  # 6 time ids × 8 + text_encoder_2's projection
        cross_attention_dim=32 + 32,  # both encoders' hidden states, concatenated
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=8,
        sample_size=16,
    )
    scheduler = EulerAncestralDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        timestep_spacing="trailing",
        steps_offset=1,
    )
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=CLIPTextModel(text_config),
        text_encoder_2=CLIPTextModelWithProjection(text_config),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=scheduler,
    )
    pipe.save_pretrained(str(target))
    return target
