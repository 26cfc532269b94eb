#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_gguf (tests/fuzz/corpus/gguf/): small GGUF v3
headers shaped like the models slm reads (llama / qwen2 metadata, a tokenizer
array, a chat template, tensor infos), with their tensor data cut off or
tiny. Run once from the repository root; the files are committed."""
import os
import struct

U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)


def s(text):
    b = text.encode()
    return struct.pack("<Q", len(b)) + b


def kv(key, typ, val):
    out = s(key) + struct.pack("<I", typ)
    if typ == STR:
        return out + s(val)
    if typ == ARR:
        et, items = val
        out += struct.pack("<IQ", et, len(items))
        for it in items:
            out += s(it) if et == STR else struct.pack(FMT[et], it)
        return out
    return out + struct.pack(FMT[typ], val)


FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
       BOOL: "<?", U64: "<Q", I64: "<q", F64: "<d"}


def gguf(kvs, tensors=(), data=True):
    """tensors: (name, dims, ggml type, nbytes)."""
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    for k in kvs:
        out += kv(*k)
    off = 0
    for name, dims, typ, nbytes in tensors:
        out += s(name) + struct.pack("<I", len(dims))
        out += b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", typ, off)
        off += (nbytes + 31) // 32 * 32
    if data:
        out += b"\0" * ((32 - len(out) % 32) % 32) + b"\0" * off
    return out


def llama(arch="llama", ctx_type=U32, ctx=2048, extra=()):
    return [
        ("general.architecture", STR, arch),
        ("general.name", STR, "tiny " + arch),
        ("general.license", STR, "apache-2.0"),
        ("general.file_type", U32, 1),
        (arch + ".context_length", ctx_type, ctx),
        (arch + ".embedding_length", U32, 8),
        (arch + ".block_count", U32, 1),
        (arch + ".attention.head_count", U32, 2),
        (arch + ".attention.head_count_kv", U32, 1),
        ("tokenizer.ggml.model", STR, "gpt2"),
        ("tokenizer.ggml.tokens", ARR, (STR, ["<s>", "</s>", "a", "b"])),
        ("tokenizer.ggml.eos_token_id", U32, 1),
        *extra,
    ]


TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
            "{% endfor %}<|im_start|>assistant\n")
F32_T, F16_T, Q4_0_T = 0, 1, 2
seeds = {
    "header_only": gguf([("general.architecture", STR, "llama")]),
    "llama_f16": gguf(llama(), [("token_embd.weight", [8, 4], F16_T, 64),
                                ("output_norm.weight", [8], F32_T, 32)]),
    "qwen2_template": gguf(llama("qwen2", extra=[("tokenizer.chat_template", STR, TEMPLATE)]),
                           [("token_embd.weight", [32, 4], Q4_0_T, 72)]),
    "no_file_type": gguf([k for k in llama() if k[0] != "general.file_type"],
                         [("blk.0.attn_q.weight", [32, 2], Q4_0_T, 36),
                          ("blk.0.attn_k.weight", [32, 2], Q4_0_T, 36)]),
    "ctx_u64": gguf(llama(ctx_type=U64, ctx=1 << 33)),
    "ctx_i32": gguf(llama(ctx_type=I32, ctx=-1)),
    "adapter": gguf([("general.architecture", STR, "llama"), ("general.type", STR, "adapter"),
                     ("adapter.type", STR, "lora"), ("adapter.lora.alpha", F32, 16.0)],
                    [("blk.0.attn_q.weight.lora_a", [8, 2], F32_T, 64)]),
    "data_cut": gguf(llama(), [("token_embd.weight", [8, 4], F16_T, 64)], data=False),
    "eos_i64": gguf(llama(extra=[("tokenizer.ggml.bos_token_id", I64, 0)])),
}
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "gguf")
os.makedirs(root, exist_ok=True)
for name, blob in seeds.items():
    with open(os.path.join(root, name), "wb") as f:
        f.write(blob)
