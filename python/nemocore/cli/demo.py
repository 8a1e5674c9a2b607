"""``nemocore demo``: a short tour of what nemocore does today.

It grows with the project toward train-then-generate; today it exercises what is built end to
end: the conv and Mamba-2 SSD kernels against their pure-PyTorch references, prefill then
token-by-token decoding with rolling states, a few training steps through the hand-written
backward passes, a MoE layer trained with aux-loss-free load balancing, one prompt forked
into many samples through the hybrid cache and bifurcated attention, the Rust tokenizer
trained here and the chat template, and one benchmark.
"""

from __future__ import annotations

import time

import torch

from nemocore import _native, ops, ref
from nemocore.bench import run_case
from nemocore.bench.cases import conv_fwd
from nemocore.cli.doctor import _lines, collect


def _step(title: str) -> None:
    print(f"\n== {title}")


def _ssd_tour(quick: bool) -> None:
    b, length, h, p, g, n = (1, 200, 4, 16, 1, 16) if quick else (2, 1000, 8, 32, 2, 64)
    _step(f"Mamba-2 SSD scan, C++ kernel vs reference  (b={b} L={length} H={h} P={p} N={n})")
    x = torch.randn(b, length, h, p)
    dt = torch.randn(b, length, h) - 1
    a = -torch.rand(h) - 0.5
    bm, cm = torch.randn(b, length, g, n), torch.randn(b, length, g, n)
    d, dt_bias = torch.randn(h), torch.randn(h) * 0.1
    kw = dict(D=d, dt_bias=dt_bias, dt_softplus=True)
    t0 = time.perf_counter()
    y, state = ops.mamba_chunk_scan_combined(x, dt, a, bm, cm, 128, return_final_states=True, **kw)
    ours_ms = (time.perf_counter() - t0) * 1e3
    t0 = time.perf_counter()
    y_ref = ref.mamba_chunk_scan_combined(x, dt, a, bm, cm, 128, **kw)
    ref_ms = (time.perf_counter() - t0) * 1e3
    print(
        f"  max |error| vs chunked reference = {(y - y_ref).abs().max().item():.2e}  "
        f"({ours_ms:.0f} ms vs {ref_ms:.0f} ms)"
    )
    steps = 16
    xs, dts = torch.randn(b, steps, h, p), torch.randn(b, steps, h) - 1
    bs, cs = torch.randn(b, steps, g, n), torch.randn(b, steps, g, n)
    outs = [
        ops.selective_state_update(
            state,
            xs[:, t],
            dts[:, t, :, None].expand(-1, -1, p),
            a[:, None, None].expand(h, p, n),
            bs[:, t],
            cs[:, t],
            D=d[:, None].expand(h, p),
            dt_bias=dt_bias[:, None].expand(h, p),
            dt_softplus=True,
        )
        for t in range(steps)
    ]
    full = ops.mamba_chunk_scan_combined(
        torch.cat([x, xs], 1),
        torch.cat([dt, dts], 1),
        a,
        torch.cat([bm, bs], 1),
        torch.cat([cm, cs], 1),
        128,
        **kw,
    )
    err = (torch.stack(outs, 1) - full[:, length:]).abs().max().item()
    print(f"  prefill + {steps} decode steps match one scan of the whole: max |diff| = {err:.1e}")


def _tokenizer_tour(quick: bool) -> None:
    import inspect
    import json

    from nemocore import Tokenizer
    from nemocore.chat import split_reasoning

    _step("Rust tokenizer: train a byte-level BPE on Python's own source, then use it")
    texts = [
        inspect.getsource(m)
        for m in (
            json.decoder,
            json.encoder,
            time.__class__.__module__ and __import__("argparse"),
            __import__("dataclasses"),
        )
    ]
    vocab = 600 if quick else 2000
    t0 = time.perf_counter()
    tok = Tokenizer.train(
        texts,
        vocab_size=vocab,
        special_tokens=["<|im_start|>", "<|im_end|>", "<think>", "</think>"],
    )
    print(
        f"  trained a {tok.vocab_size}-token vocabulary on {sum(map(len, texts)) / 1e3:.0f} kB "
        f"in {time.perf_counter() - t0:.2f} s"
    )
    sample = "def greet(name): return f'héllo {name} 👋'"
    ids = tok.encode(sample)
    print(f"  {sample!r} -> {len(ids)} tokens, decodes back exactly: {tok.decode(ids) == sample}")
    messages = [{"role": "user", "content": "What is 2 + 2?"}]
    for mode in ("on", "off"):
        prompt = tok.apply_chat_template(messages, reasoning=mode)
        print(f"  chat prompt, reasoning {mode}: {prompt!r}")
    thought, answer = split_reasoning("<think>\n2 + 2 = 4\n</think>\nFour.")
    print(f"  a reply splits into reasoning {thought.strip()!r} and answer {answer.strip()!r}")


def _moe_tour(quick: bool) -> None:
    from nemocore.layers import MoE, MoEConfig, update_router_biases

    d, experts, k, f = (32, 8, 2, 32) if quick else (64, 16, 4, 64)
    config = MoEConfig(
        hidden_size=d,
        n_routed_experts=experts,
        num_experts_per_tok=k,
        moe_intermediate_size=f,
        moe_shared_expert_intermediate_size=2 * f,
        routed_scaling_factor=2.5,
        router_bias_update_rate=1e-2,
        initializer_range=0.1,
    )
    _step(f"MoE layer: permute, grouped GEMMs, unpermute  (d={d} E={experts} top-{k} f={f})")
    teacher, student = MoE(config), MoE(config)
    for layer in (teacher, config.latent(d // 2)):
        layer = layer if isinstance(layer, MoE) else MoE(layer)
        u = torch.randn(4, 64, d)
        err = (layer(u) - layer.reference_forward(u)).abs().max().item()
        kind = "LatentMoE" if layer.config.moe_latent_size else "MoE"
        print(f"  {kind:>9}: max |diff| vs a loop over experts = {err:.1e}")
    # A skewed start: for these inputs the router favours two experts by about 1.5 in logit.
    with torch.no_grad():
        student.gate.weight[:2] += 3.0 / d
    opt = torch.optim.Adam(student.parameters(), lr=3e-3)
    student.train()
    steps = 40 if quick else 120
    for step in range(steps + 1):
        u = torch.randn(8, 64, d) + 0.5
        loss = (student(u) - teacher(u).detach()).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % (steps // 4) == 0:
            vio = student.gate.load_stats()["max_violation"]
            print(f"  step {step:3d}  loss {loss.item():.3e}  load max violation {vio:.2f}")
        update_router_biases(student)  # aux-loss-free balancing, once per optimizer step


def _cache_tour(quick: bool) -> None:
    from nemocore.cache import AttentionCacheSpec, HybridCache, MambaCacheSpec

    n, prompt_len, steps = (4, 256, 6) if quick else (16, 2048, 12)
    H, Hkv, D = 8, 2, 64
    _step(f"HybridCache: one prompt of {prompt_len} tokens forked into {n} samples")
    cache = HybridCache(
        [AttentionCacheSpec(Hkv, D), MambaCacheSpec(256, 4, 8, 32, 16)],
        max_batch=n, max_prefix_len=prompt_len, max_decode_len=steps, max_rollback=4,
        dtype=torch.float32,
    )  # fmt: skip
    cache.start_prompts(1)
    k_p, v_p = torch.randn(2, 1, Hkv, prompt_len, D)
    cache.write_prefix(0, k_p, v_p)
    cache.fork(n)
    own_k, own_v, err = [], [], 0.0
    for _ in range(steps):
        q = torch.randn(n, H, 1, D)
        k_new, v_new = torch.randn(2, n, Hkv, 1, D)
        out = cache.attend(0, q, k_new, v_new)
        cache.advance(1)
        own_k.append(k_new)
        own_v.append(v_new)
        # what a plain cache does: the prompt copied into every sample, then SDPA
        k_full = torch.cat([k_p.expand(n, -1, -1, -1), *own_k], 2)
        v_full = torch.cat([v_p.expand(n, -1, -1, -1), *own_v], 2)
        want = torch.nn.functional.scaled_dot_product_attention(q, k_full, v_full, enable_gqa=True)
        err = max(err, (out - want).abs().max().item())
    mem = cache.memory_bytes()
    print(f"  {steps} decode steps match SDPA over replicated caches: max |diff| = {err:.1e}")
    print(
        f"  KV in use {mem['used_kv'] / 2**20:.1f} MiB vs {mem['replicated_kv'] / 2**20:.1f} MiB "
        f"replicated; Mamba snapshots for rollback {mem['mamba_snapshots'] / 2**20:.1f} MiB"
    )
    cache.rollback(torch.tensor([0, 1, 2, 3] + [0] * (n - 4)))
    print(f"  rollback(0, 1, 2, 3 tokens): decoded lengths now {cache.dec_lens[:4].tolist()}")


def _model_tour(quick: bool) -> object:
    import tempfile

    from nemocore.models import NemotronHConfig, NemotronHForCausalLM

    _step("Nemotron-H tiny model (M * - E blocks): train, save, load, generate")
    torch.manual_seed(0)
    model = NemotronHForCausalLM(NemotronHConfig.tiny())
    text = torch.tensor(list(b"nemocore hybrid mamba transformer moe. " * 4))[None]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(30 if quick else 80):
        loss = model(text, labels=text).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % (10 if quick else 20) == 0:
            print(f"  step {step:3d}  loss {loss.item():.3f}")
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        loaded = NemotronHForCausalLM.from_pretrained(tmp)
    prompt = text[:, :12]
    out = loaded.generate(prompt, max_new_tokens=28, temperature=0, eos_token_id=[])
    print(f"  {loaded.num_params() / 1e6:.2f}M params, saved and reloaded as a HF checkpoint")
    print(f"  greedy continuation of {bytes(prompt[0].tolist())!r}: {bytes(out[0].tolist())!r}")
    return loaded


def _grammar_tour(model: object) -> None:
    import json

    from nemocore.grammar import (
        GrammarCompiler,
        GrammarMatcher,
        TokenizerInfo,
        allocate_token_bitmask,
        apply_token_bitmask_inplace,
    )

    _step("constrained decoding: the same tiny model must answer in a JSON Schema")
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 10},
            "kind": {"enum": ["mamba", "attention", "moe"]},
            "layers": {"type": "integer", "minimum": 1, "maximum": 99},
        },
        "required": ["name", "kind", "layers"],
    }
    eos = model.config.eos_token_id
    info = TokenizerInfo([bytes([i]) for i in range(256)], stop_token_ids=[eos])
    t0 = time.perf_counter()
    compiled = GrammarCompiler(info).compile_json_schema(schema, any_whitespace=False)
    compile_ms = (time.perf_counter() - t0) * 1e3
    matcher, bitmask = GrammarMatcher(compiled), allocate_token_bitmask(1, info.vocab_size)
    ids, overridden = torch.tensor([list(b"nemocore ")]), 0
    with torch.no_grad():
        while not matcher.is_terminated() and ids.shape[1] < 200:
            logits = model(ids).logits[:, -1].float()
            unconstrained = int(logits.argmax())
            matcher.fill_next_token_bitmask(bitmask)
            apply_token_bitmask_inplace(logits, bitmask)
            token = int(logits.argmax())
            overridden += token != unconstrained
            matcher.accept_token(token)
            ids = torch.cat([ids, torch.tensor([[token]])], 1)
    text = bytes(ids[0, 9:].tolist()).rstrip(bytes([eos])).decode()
    doc = json.loads(text)
    print(f"  schema compiled in {compile_ms:.1f} ms; greedy decoding under the token mask:")
    print(f"  {text}")
    print(f"  json.loads: ok, keys {sorted(doc)}; the mask overrode the model {overridden} times")


def run_demo(quick: bool = False) -> int:
    print("nemocore demo: the foundation, end to end")
    _step("what was built")
    for label, text, ok in _lines(collect()):
        print(f"  {'ok' if ok else '!!'} {label}: {text}")

    torch.manual_seed(0)
    b, c, length, k = (2, 64, 512, 4) if quick else (4, 256, 4096, 4)
    x = torch.randn(b, c, length)
    w = torch.randn(c, k) / k
    bias = torch.randn(c)

    _step(f"causal conv1d, C++ kernel vs pure-PyTorch reference  (b={b} C={c} L={length} K={k})")
    for dtype in (torch.float32, torch.bfloat16):
        y = ops.causal_conv1d_fn(x.to(dtype), w, bias, activation="silu")
        truth = ref.causal_conv1d_fn(
            x.to(dtype).double(), w.double(), bias.double(), activation="silu"
        )
        err = (y.double() - truth).abs().max().item()
        print(f"  {str(dtype)[6:]:>9}: max |error| vs float64 reference = {err:.2e}")

    _step("prefill, then decode token by token with a rolling conv state")
    prefix = length // 2
    _, state = ops.causal_conv1d_fn(
        x[..., :prefix], w, bias, return_final_states=True, activation="silu"
    )
    steps = [
        ops.causal_conv1d_update(x[..., t], state, w, bias, "silu")
        for t in range(prefix, min(prefix + 64, length))
    ]
    full = ops.causal_conv1d_fn(x, w, bias, activation="silu")
    dec_err = (torch.stack(steps, -1) - full[..., prefix : prefix + len(steps)]).abs().max()
    print(f"  {len(steps)} decode steps match the full forward: max |diff| = {dec_err:.1e}")

    _step("training: fit a depthwise filter with the hand-written backward")
    target_w = torch.randn(c, k) / k
    target = ref.causal_conv1d_fn(x, target_w, activation="silu")
    w_fit = torch.zeros(c, k, requires_grad=True)
    opt = torch.optim.Adam([w_fit], lr=0.05)
    t0 = time.perf_counter()
    for step in range(60 if quick else 150):
        loss = (ops.causal_conv1d_fn(x, w_fit, activation="silu") - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % (20 if quick else 50) == 0:
            print(f"  step {step:3d}  loss {loss.item():.3e}")
    print(
        f"  final loss {loss.item():.3e}, max |w - w*| = "
        f"{(w_fit - target_w).abs().max().item():.2e} ({time.perf_counter() - t0:.1f} s)"
    )

    _ssd_tour(quick)
    _moe_tour(quick)
    _cache_tour(quick)
    _grammar_tour(_model_tour(quick))
    _tokenizer_tour(quick)

    _step("Rust core")
    rs = _native.rust()
    info = rs.build_info()
    print(f"  nemocore._rs {rs.__version__} ({info['profile']}, {info['rustc']})")

    _step("one benchmark (median of alternating runs; see `nemocore bench` for all)")
    r = run_case(conv_fwd(4, 512, 4096, 4), rounds=2, min_time_s=0.2)
    print(
        f"  {r.name} {r.shape}: nemocore {r.ours_ms:.2f} ms, {r.peer} {r.peer_ms:.2f} ms "
        f"-> {r.speedup:.2f}x"
    )
    print("\ndone.")
    return 0
