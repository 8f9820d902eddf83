"""How far can CUDA graphs take one training update?  A probe for issue 10's next step.

    python benchmarks/gpu_probe.py [--model random:smollm2-135m] [--length 192] [--json-out FILE]

The trainer is bound by host overhead on a GPU: ~2,000 small kernels per forward pass of the
embedded model with LoRA on every linear layer, each costing more host time than GPU time.  A CUDA
graph replays a whole pass as one launch, but needs fixed shapes.  Right-padding every input to a
fixed length is exact for a causal model without any attention mask (a real token never attends to
the pad tokens after it), so fixed shapes cost only some wasted arithmetic.  This probe measures,
on the paper preset's adapter (LoRA r=64, alpha 32, dropout 0.05, every linear layer), what each
piece of an update costs eagerly and as a replayed graph:

* ``fwd``: a no-grad forward pass, batch 1 (one round of sampling) and batch 8 (the gpu profile);
* ``step``: forward + backward on batch 5 (one paper minibatch) and a fused Adam step;
* the same pieces captured with ``torch.cuda.graph`` / ``torch.cuda.make_graphed_callables``.

With ``--adapters R`` the model carries R adapters run side by side
(:func:`moralkit.llm.adapters.adapters_side_by_side`: R training runs sharing each pass, one group
of rows per run, one set of kernels for all), every batch is R times as large, and ``ms_per_run``
is what one run's share costs (``batch`` in the output: the rows of one run): compare it with the ``--adapters 1`` figure of the same lease to see
what batching runs buys.

Each figure is the median of ``--repeats`` timed calls after warm-up, with ``torch.cuda.synchronize``.
It prints one JSON object per line (and appends them to ``--json-out``).  Without CUDA only the
eager figures are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def timed(fn, repeats: int, sync) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls (after two warm-up calls)."""
    for _ in range(2):
        fn()
    sync()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - start)
    return statistics.median(out)


class Logits(torch.nn.Module):
    """The model as a module of tensors only (what graph capture needs): ids -> logits."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, ids):
        return self.model(input_ids=ids, use_cache=False).logits


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="random:smollm2-135m")
    parser.add_argument("--length", type=int, default=192, help="fixed (padded) tokens per row")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--json-out", default=None)
    parser.add_argument("--tf32", action="store_true", help="let float32 matrix products use TF32")
    parser.add_argument("--no-lora", action="store_true",
                        help="the bare model (what a LoRA merged into the weights costs): forward passes only")
    parser.add_argument("--adapters", type=int, default=1,
                        help="adapters side by side in every pass (R runs sharing it); batches grow R-fold")
    args = parser.parse_args(argv)
    if args.adapters < 1 or (args.no_lora and args.adapters > 1):
        parser.error("--adapters must be at least 1, and needs LoRA (no --no-lora)")

    from peft import get_peft_model

    from moralkit.llm.models import load_model, random_model
    from moralkit.ppo import PPOConfig, lora_config

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if args.model.startswith("random:"):  # no tokenizer needed (load_model would ask for the embedded one)
        model = random_model(args.model.removeprefix("random:"), device=device, dtype=args.dtype)
    else:
        model, _ = load_model(args.model, device=device, dtype=args.dtype)
    names = [f"run{i}" for i in range(args.adapters)]
    if not args.no_lora:
        config = lora_config(PPOConfig.preset("paper"))
        model = get_peft_model(model, config, adapter_name=names[0])
        for name in names[1:]:
            model.add_adapter(name, config)
        for key, p in model.named_parameters():  # every run's adapter trains (peft marks only the active one)
            p.requires_grad_("lora_" in key)
    side_by_side = contextlib.ExitStack()
    if args.adapters > 1:
        from moralkit.llm.adapters import adapters_side_by_side

        side_by_side.enter_context(adapters_side_by_side(model, names))
    net = Logits(model)
    vocab = model.config.vocab_size
    gen = torch.Generator(device="cpu").manual_seed(0)

    def ids(batch):  # ``batch`` rows per run
        return torch.randint(0, vocab, (batch * args.adapters, args.length), generator=gen).to(device)

    def report(**row):
        if "ms" in row:
            row["ms_per_run"] = round(row["ms"] / args.adapters, 3)
        row = {"model": args.model, "length": args.length, "dtype": args.dtype, "tf32": args.tf32,
               "lora": not args.no_lora, "adapters": args.adapters,
               "device": torch.cuda.get_device_name() if cuda else "cpu", **row}
        print(json.dumps(row), flush=True)
        if args.json_out:  # each row at once: a probe cut short keeps what it measured
            with open(args.json_out, "a") as handle:
                handle.write(json.dumps(row) + "\n")

    def guarded(name, fn):
        try:
            fn()
        except Exception as exc:  # a probe: report what failed and go on with the rest
            report(part=name, error=f"{type(exc).__name__}: {exc}"[:400])

    # -- eager ------------------------------------------------------------------------------
    def eager_forward():
        net.eval()
        for batch in (1, 8):
            x = ids(batch)
            with torch.no_grad():
                seconds = timed(lambda: net(x), args.repeats, sync)
            report(part="fwd", mode="eager", batch=batch, ms=round(seconds * 1e3, 2))

    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(params, lr=1e-5, fused=cuda, capturable=cuda) if params else None

    def eager_step():
        net.train()
        x = ids(5)

        def fwd_bwd():
            net(x).float().logsumexp(-1).mean().backward()

        report(part="fwd+bwd", mode="eager", batch=5, ms=round(timed(fwd_bwd, args.repeats, sync) * 1e3, 2))
        report(part="adam", mode="eager" if not cuda else "fused", ms=round(timed(optimiser.step, args.repeats, sync) * 1e3, 2))
        optimiser.zero_grad(set_to_none=False)

    guarded("eager fwd", eager_forward)
    if not args.no_lora:
        guarded("eager step", eager_step)
    if not cuda:
        return 0

    # -- graphs -----------------------------------------------------------------------------
    def graphed_forward():
        net.eval()
        for batch in (1, 8):
            static = ids(batch)
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream), torch.no_grad():
                for _ in range(3):
                    net(static)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            start = time.perf_counter()
            with torch.cuda.graph(graph), torch.no_grad():
                out = net(static)
            capture = time.perf_counter() - start
            static.copy_(ids(batch))
            graph.replay()
            with torch.no_grad():
                exact = torch.allclose(out, net(static), atol=1e-4, rtol=1e-4)
            report(part="fwd", mode="graph", batch=batch, ms=round(timed(graph.replay, args.repeats, sync) * 1e3, 3),
                   capture_s=round(capture, 2), matches_eager=bool(exact))

    def graphed_step():
        net.train()
        x = ids(5)
        start = time.perf_counter()
        graphed = torch.cuda.make_graphed_callables(net, (x,), num_warmup_iters=3)
        capture = time.perf_counter() - start

        def fwd_bwd():
            graphed(x).float().logsumexp(-1).mean().backward()

        report(part="fwd+bwd", mode="graph", batch=5, ms=round(timed(fwd_bwd, args.repeats, sync) * 1e3, 3),
               capture_s=round(capture, 2))
        optimiser.zero_grad(set_to_none=False)

    def graphed_adam():
        optimiser.zero_grad(set_to_none=False)
        for p in params:
            p.grad.normal_()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                optimiser.step()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            optimiser.step()
        report(part="adam", mode="graph", ms=round(timed(graph.replay, args.repeats, sync) * 1e3, 3))

    guarded("graph fwd", graphed_forward)
    if not args.no_lora:
        guarded("graph adam", graphed_adam)
        guarded("graph step", graphed_step)

    return 0


if __name__ == "__main__":
    raise SystemExit(main())
