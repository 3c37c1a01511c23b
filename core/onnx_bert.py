"""A BERT encoder's ONNX graph built straight from its safetensors weights: no torch, no export.

The graph uses ONNX Runtime's fused transformer operators (the ones its BERT optimiser produces from a
PyTorch export): EmbedLayerNormalization, Attention, SkipLayerNormalization and BiasGelu. Its one output
is the last hidden state; pooling and normalisation happen in `core.local_embeddings.OnnxEncoder`. Then
`quantize_int8` makes MatMul and Attention weights int8 (per channel), the form that runs fastest here.

Only what BERT-style sentence encoders need is supported: absolute positions, GELU, post-layer-norm.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MS_DOMAIN = "com.microsoft"
OPSET = 17


class UnsupportedModel(ValueError):
    """The model's config is not a plain BERT encoder this builder knows."""


def _config(model_dir: Path) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((model_dir / "config.json").read_text())
    if config.get("model_type") != "bert":
        raise UnsupportedModel(f"model_type {config.get('model_type')!r} is not 'bert'")
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise UnsupportedModel("only absolute position embeddings are supported")
    if config.get("hidden_act", "gelu") != "gelu":
        raise UnsupportedModel(f"activation {config.get('hidden_act')!r} is not 'gelu'")
    return config


def build_bert_onnx(model_dir: Path, target: Path) -> None:
    """Write the fp32 ONNX graph of the BERT model in `model_dir` (config.json, model.safetensors)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from safetensors.numpy import load_file

    config = _config(model_dir)
    weights = load_file(str(model_dir / "model.safetensors"))
    prefix = "bert." if "bert.embeddings.word_embeddings.weight" in weights else ""

    def w(name: str) -> Any:
        return weights[prefix + name].astype(np.float32)

    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    layers = int(config["num_hidden_layers"])
    eps = float(config.get("layer_norm_eps", 1e-12))
    initializers: list[Any] = []
    nodes: list[Any] = []

    def const(name: str, value: Any) -> str:
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    # int64 inputs as a tokenizer gives them; the fused embedding wants int32
    for name in ("input_ids", "token_type_ids", "attention_mask"):
        nodes.append(helper.make_node("Cast", [name], [f"{name}_i32"], to=TensorProto.INT32))
    e = "embeddings."
    nodes.append(
        helper.make_node(
            "EmbedLayerNormalization",
            [
                "input_ids_i32",
                "token_type_ids_i32",
                const("word_embeddings", w(e + "word_embeddings.weight")),
                const("position_embeddings", w(e + "position_embeddings.weight")),
                const("token_type_embeddings", w(e + "token_type_embeddings.weight")),
                const("embeddings_ln_gamma", w(e + "LayerNorm.weight")),
                const("embeddings_ln_beta", w(e + "LayerNorm.bias")),
                "attention_mask_i32",
            ],
            ["hidden_0", "mask_index"],
            domain=MS_DOMAIN,
            epsilon=eps,
        )
    )
    state = "hidden_0"
    for i in range(layers):
        p = f"encoder.layer.{i}."
        a = p + "attention."
        qkv_weight = np.concatenate(
            [w(a + f"self.{part}.weight").T for part in ("query", "key", "value")], axis=1
        )  # [hidden, 3 * hidden]: PyTorch keeps Linear weights as [out, in]
        qkv_bias = np.concatenate([w(a + f"self.{part}.bias") for part in ("query", "key", "value")])
        nodes.append(
            helper.make_node(
                "Attention",
                [state, const(f"l{i}_qkv_w", qkv_weight), const(f"l{i}_qkv_b", qkv_bias), "mask_index"],
                [f"l{i}_context"],
                domain=MS_DOMAIN,
                num_heads=heads,
            )
        )
        nodes.append(
            helper.make_node("MatMul", [f"l{i}_context", const(f"l{i}_attn_out_w", w(a + "output.dense.weight").T)],
                             [f"l{i}_attn_proj"])
        )
        nodes.append(
            helper.make_node(
                "SkipLayerNormalization",
                [
                    f"l{i}_attn_proj",
                    state,
                    const(f"l{i}_attn_ln_gamma", w(a + "output.LayerNorm.weight")),
                    const(f"l{i}_attn_ln_beta", w(a + "output.LayerNorm.bias")),
                    const(f"l{i}_attn_out_b", w(a + "output.dense.bias")),
                ],
                [f"l{i}_attn_norm"],
                domain=MS_DOMAIN,
                epsilon=eps,
            )
        )
        ffn_in_w = const(f"l{i}_ffn_in_w", w(p + "intermediate.dense.weight").T)
        nodes.append(helper.make_node("MatMul", [f"l{i}_attn_norm", ffn_in_w], [f"l{i}_ffn_in"]))
        nodes.append(
            helper.make_node("BiasGelu", [f"l{i}_ffn_in", const(f"l{i}_ffn_in_b", w(p + "intermediate.dense.bias"))],
                             [f"l{i}_ffn_act"], domain=MS_DOMAIN)
        )
        nodes.append(
            helper.make_node("MatMul", [f"l{i}_ffn_act", const(f"l{i}_ffn_out_w", w(p + "output.dense.weight").T)],
                             [f"l{i}_ffn_out"])
        )
        out = "last_hidden_state" if i == layers - 1 else f"hidden_{i + 1}"
        nodes.append(
            helper.make_node(
                "SkipLayerNormalization",
                [
                    f"l{i}_ffn_out",
                    f"l{i}_attn_norm",
                    const(f"l{i}_out_ln_gamma", w(p + "output.LayerNorm.weight")),
                    const(f"l{i}_out_ln_beta", w(p + "output.LayerNorm.bias")),
                    const(f"l{i}_ffn_out_b", w(p + "output.dense.bias")),
                ],
                [out],
                domain=MS_DOMAIN,
                epsilon=eps,
            )
        )
        state = out

    inputs = [
        helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "tokens"])
        for name in ("input_ids", "attention_mask", "token_type_ids")
    ]
    output = helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "tokens", hidden])
    graph = helper.make_graph(nodes, "bert_encoder", inputs, [output], initializers)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, 1)],
        producer_name="ensemble.core.onnx_bert",
    )
    onnx.checker.check_model(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(target))


def quantize_int8(source: Path, target: Path) -> None:
    """int8 weights (per channel) on MatMul and Attention; activations quantised per batch at run time."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(source),
        str(target),
        per_channel=True,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul", "Attention"],
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
