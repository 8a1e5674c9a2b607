"""Training study: the same small nemocore model trained on the same bytes for the same steps
with the BF16, FP8 and NVFP4 recipes (model.md 6), loss curves in one plot.

Model: ``nemocore.models.presets.tiny`` widened to 128 (pattern ``M*-EM*E``: Mamba, attention,
MLP, MoE), vocab 256 (bytes). Data: the Python standard library's own ``.py`` sources, read as
bytes; a held-out 5% for validation. Every run starts from the same initialisation and sees the
same batches (seeded); AdamW on FP32 master weights. ``nemocore.quant.convert`` swaps the
``nn.Linear`` layers (Mamba in/out projections, attention projections, MLP and shared-expert
projections) for ``QuantLinear``; the LM head stays high precision, as do embeddings, norms,
the SSM scan, attention softmax and the routed experts (grouped weights, not ``nn.Linear``).
The GEMMs are emulated (quantize, dequantize, fp32 multiply), so the numbers are those of the
recipe; the speed is not.

    python benches/cpu/nvfp4_training_study.py [--steps 150] [--batch 8] [--seq 128]
        [--out docs/nvfp4_training_study]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from nemocore import quant
from nemocore.models import NemotronHForCausalLM, presets


def stdlib_bytes() -> torch.Tensor:
    root = Path(os.__file__).parent
    files = sorted(p for p in root.glob("*.py"))
    data = b"".join(p.read_bytes() for p in files)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).long()


def model_config():
    return presets.tiny(
        hidden_size=128, intermediate_size=256, mamba_num_heads=8, mamba_head_dim=32,
        head_dim=32, moe_intermediate_size=64, moe_shared_expert_intermediate_size=128,
    )  # fmt: skip


def batches(data: torch.Tensor, steps: int, batch: int, seq: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        starts = torch.randint(0, data.numel() - seq - 1, (batch,), generator=g)
        yield torch.stack([data[s : s + seq] for s in starts.tolist()])


@torch.no_grad()
def evaluate(model, data: torch.Tensor, seq: int) -> float:
    n = (data.numel() - 1) // seq
    chunks = data[: n * seq].reshape(n, seq)[:32]
    return model(chunks, labels=chunks).loss.item()


def train(fmt: str, train_data, val_data, args) -> dict:
    torch.manual_seed(0)
    model = NemotronHForCausalLM(model_config())
    quant.convert(model, quant.Recipe(fmt, seed=1))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    losses, t0 = [], time.perf_counter()
    for step, x in enumerate(batches(train_data, args.steps, args.batch, args.seq, seed=2)):
        lr_scale = min(1.0, (step + 1) / 10)  # short warm-up
        for group in opt.param_groups:
            group["lr"] = args.lr * lr_scale
        loss = model(x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if step % 25 == 0:
            print(f"{fmt} step {step} loss {loss.item():.4f} ({time.perf_counter() - t0:.0f} s)")
    return {"losses": losses, "val_loss": evaluate(model, val_data, args.seq)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--out", default="docs/nvfp4_training_study")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the model is tiny)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = stdlib_bytes()
    split = int(data.numel() * 0.95)
    runs = {fmt: train(fmt, data[:split], data[split:], args) for fmt in ("bf16", "fp8", "nvfp4")}
    tail = max(1, args.steps // 10)
    final = {f: sum(r["losses"][-tail:]) / tail for f, r in runs.items()}
    print(f"| recipe | final train loss (mean of last {tail} steps) | gap vs bf16 | val loss | "
          "val gap |\n|---|---|---|---|---|")  # fmt: skip
    for f, r in runs.items():
        gap = (final[f] - final["bf16"]) / final["bf16"]
        vgap = (r["val_loss"] - runs["bf16"]["val_loss"]) / runs["bf16"]["val_loss"]
        print(f"| {f} | {final[f]:.4f} | {gap:+.2%} | {r['val_loss']:.4f} | {vgap:+.2%} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"args": vars(args), "runs": runs}, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for f, r in runs.items():
        smooth = torch.tensor(r["losses"]).unfold(0, tail, 1).mean(1)
        ax.plot(range(tail - 1, args.steps), smooth, label=f"{f} (val {r['val_loss']:.3f})")
    ax.set_xlabel("step")
    ax.set_ylabel(f"train loss (running mean of {tail})")
    ax.set_title("nemocore tiny hybrid LM on stdlib bytes: BF16 vs FP8 vs NVFP4 recipes")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=120)
    print(f"wrote {out.with_suffix('.png')} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
