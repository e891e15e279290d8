"""The data section of a run's config: the mixture, held-out split, token budgets, packing, workers, and how a
decoder-only model sees an example (loss_on, chat_template, target_delimiter: :mod:`t2t.data.causal`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DataConfig:
    mixture: str = field(default="offline", metadata={"help": "mixture name from task_registry/",
                                                          "metavar": "NAME"})
    heldout: tuple[str, ...] = field(default=(), metadata={
        "help": "extra held-out clusters or tasks, comma-separated (added to the mixture's own)",
        "metavar": "NAME,..."})
    task_dir: tuple[str, ...] = field(default=(), metadata={"help": "extra task folders, comma-separated"})
    mixture_dir: tuple[str, ...] = field(default=(), metadata={"help": "extra mixture folders, comma-separated"})
    max_input_len: int = field(default=256, metadata={
        "help": "input tokens kept per example (EOS kept); causal LMs: prompt and target share "
                "max_input_len + max_target_len, the prompt cut from the left"})
    max_target_len: int = field(default=64, metadata={"help": "target tokens kept per example (EOS kept)"})
    packing: bool = field(default=True, metadata={"help": "pack several examples per row (exact loss)"})
    pack_input_len: int = field(default=512, metadata={
        "help": "encoder tokens per packed row (a longer example gets a row of its own); causal LMs pack "
                "rows of pack_input_len + pack_target_len tokens"})
    pack_target_len: int = field(default=128, metadata={"help": "decoder tokens per packed row"})
    loss_on: str = field(default="target", metadata={
        "help": "causal LMs: 'target' (loss on the target and its EOS, seqio's PrefixLM) or 'all' (the whole "
                "sequence, prompt included)", "choices": ("target", "all")})
    chat_template: bool = field(default=False, metadata={
        "help": "causal LMs: render each example through the tokenizer's chat template (input = user turn, "
                "target = assistant turn, loss on the assistant turn); evaluation reads it from config.json"})
    target_delimiter: str = field(default=" ", metadata={
        "help": "causal LMs: text between the input and the target (lm-eval's target_delimiter); not used "
                "with --chat-template, whose template separates the turns"})
    micro_batch_tokens: int = field(default=0, metadata={
        "help": "padded tokens per forward pass; rows are length-grouped under it (0 = auto: 1024 on CPU, "
                "measured best; 16384 on a GPU, not yet measured)"})
    data_workers: int = field(default=-1, metadata={
        "help": "worker processes that render, tokenise and batch upcoming steps while the model trains "
                "(-1 = auto: 0 on a CPU, whose cores are training; up to 4 per process on a GPU); "
                "the batches are the same for any number"})
