"""minillm from Python: build a language model end to end on a CPU and look inside it.

A thin layer over the Rust library and the ``minillm`` command's own code (no logic of its
own): the same models, files, defaults and error messages as the command line.

>>> import minillm
>>> minillm.Tokenizer.gpt2().encode("The capital of France is")
[464, 3139, 286, 4881, 318]

Models load from anything ``--model`` takes (a run directory, a model directory, a ``.gguf``
file, an HF hub id); training returns a :class:`Run` that yields each step's metrics.
Long work runs on minillm's thread pool with the GIL released; errors raise
:class:`minillm.Error` with the library's message.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

from . import _minillm
from ._minillm import (
    CharTokenizer,
    Error,
    SimpleTokenizer,
    TextStream,
    Tokenizer,
    WordTokenizer,
    set_threads,
    threads,
)

__version__ = _minillm.__version__
__all__ = [
    "CharTokenizer",
    "Error",
    "Model",
    "Run",
    "SimpleTokenizer",
    "TextGenerationPipeline",
    "TextStream",
    "Tokenizer",
    "WordTokenizer",
    "builtin_corpus",
    "corpus",
    "dpo",
    "export",
    "pipeline",
    "prepare",
    "quantize",
    "set_threads",
    "sft",
    "threads",
    "train",
]

PathLike = Union[str, "os.PathLike[str]"]


def _flags(command: str, settings: Dict[str, Any]) -> List[str]:
    """``settings`` as ``minillm COMMAND``'s flags; a setting it does not take is refused by name."""
    known = set(_minillm.settings(command))
    argv: List[str] = []
    for key, value in settings.items():
        flag = key.replace("_", "-")
        if flag not in known:
            names = ", ".join(sorted(k.replace("-", "_") for k in known))
            raise TypeError(f"{command}() got an unexpected setting {key!r}; its settings are: {names}")
        if value is None or value is False:
            continue
        if value is True:
            argv.append(f"--{flag}")
            continue
        for v in value if isinstance(value, (list, tuple)) else [value]:
            argv += [f"--{flag}", os.fspath(v) if isinstance(v, os.PathLike) else str(v)]
    return argv


def _sampling(settings: Dict[str, Any]) -> List[str]:
    """``generate``'s sampling settings as its flags (``logit_bias`` a dict of id: bias,
    ``json_schema`` a dict or a JSON string, ``stop`` a string or a list)."""
    settings = dict(settings)
    if isinstance(settings.get("logit_bias"), dict):
        settings["logit_bias"] = [f"{i}={b}" for i, b in settings["logit_bias"].items()]
    if isinstance(settings.get("json_schema"), dict):
        settings["json_schema"] = json.dumps(settings["json_schema"])
    return _flags("generate", settings)


class Model:
    """A model ready to run. ``Model.load(spec)`` takes whatever the command line's ``--model``
    takes: a run directory (its latest checkpoint), a checkpoint, an HF model directory, a
    ``.gguf`` file, or an HF hub id such as ``openai-community/gpt2`` (from the local HF cache,
    downloaded into it when missing)."""

    def __init__(self, inner: _minillm.Model, spec: str):
        self._inner = inner
        self.spec = spec

    @classmethod
    def load(cls, model: PathLike) -> "Model":
        return cls(_minillm.Model.load(os.fspath(model)), os.fspath(model))

    @property
    def tokenizer(self) -> Tokenizer:
        return self._inner.tokenizer

    def generate(
        self,
        prompt: str,
        *,
        stream: bool = False,
        chat: bool = False,
        truncate: Optional[str] = None,
        num_samples: int = 1,
        **sampling: Any,
    ) -> Union[str, List[str], TextStream]:
        """The text after ``prompt``, as ``minillm generate`` makes it.

        Sampling settings are ``generate``'s flags: ``max_new_tokens``, ``temperature`` (0 is
        greedy), ``top_k``, ``top_p``, ``min_p``, ``repetition_penalty``, ``frequency_penalty``,
        ``presence_penalty``, ``logit_bias`` ({id: bias}), ``seed``, ``stop`` (a string or a
        list), ``json_schema`` (a dict) or ``grammar`` (a Lark file); those not given come from
        the model's ``generation_config.json``, then minillm's defaults. ``chat=True`` makes
        the prompt a user message in the model's chat template. ``stream=True`` returns an
        iterator over the text's pieces as they are made (Ctrl-C, or dropping it, stops the
        generation at the next token; a whole generation runs to its end first);
        ``num_samples`` > 1 returns a list (sample i draws with seed + i). ``truncate="left"``
        keeps the end of an overlong prompt instead of refusing it."""
        return self._inner.generate(
            prompt, _sampling(sampling), chat=chat, truncate=truncate, stream=stream, samples=num_samples
        )

    def next_token_probs(
        self,
        text: str,
        top: int = 10,
        *,
        temperature: Optional[float] = None,
        top_k: Optional[int] = None,
        top_p: Optional[float] = None,
        min_p: Optional[float] = None,
    ) -> List[Dict[str, Any]]:
        """The ``top`` most likely next tokens after ``text``: ``{"id", "text", "prob"}`` each
        (``minillm inspect --json``'s ``next``). Given any sampler setting, each also has
        ``"shaped"``: its probability once the sampler (temperature, then top-k, top-p, min-p;
        the others off) has reshaped the distribution, what ``generate`` would draw from."""
        given = {"temperature": temperature, "top_k": top_k, "top_p": top_p, "min_p": min_p}
        flags = None
        if any(v is not None for v in given.values()):
            off = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0, "repetition_penalty": 1.0}
            flags = _sampling({**off, **{k: v for k, v in given.items() if v is not None}})
        out = []
        for id_, piece, prob, shaped in self._inner.next_tokens(text, top, flags):
            entry: Dict[str, Any] = {"id": id_, "text": piece, "prob": prob}
            if shaped is not None:
                entry["shaped"] = shaped
            out.append(entry)
        return out

    def tokens(self, text: str) -> List[str]:
        """The tokens the model sees for ``text``, as text: the rows and columns of
        :meth:`attention` (with the model's BOS token first where it has one)."""
        return self._inner.tokens(text)

    def logits(self, text: str) -> "Any":
        """The logits after ``text``: a numpy array (vocabulary,)."""
        return self._inner.logits(text)

    def attention(self, text: str) -> "Any":
        """Every head's attention over ``text``: a numpy array (layers, heads, T, T); row i of a
        map is how token i spreads its attention over tokens 0..i."""
        return self._inner.attention(text)

    def residual_norms(self, text: str) -> "Any":
        """The residual stream's length at each token after each stage: a numpy array
        (layers + 1, T), stage 0 being the embedding."""
        return self._inner.residual_norms(text)

    def embeddings(self) -> "Any":
        """The token embedding table: a numpy array (vocabulary, width)."""
        return self._inner.embeddings()

    def eval(self, text: str) -> Dict[str, Any]:
        """Loss, perplexity and bits per byte on ``text`` (as ``minillm eval`` on a text file)."""
        return json.loads(self._inner.eval(text))

    def info(self) -> Dict[str, Any]:
        """The configuration, the parameter count and the weights' type and size."""
        return json.loads(self._inner.info())

    def __repr__(self) -> str:
        return f"Model.load({self.spec!r})"


class Run:
    """A command running in this process. Iterate it for each training step's metrics (the
    lines of the run's ``metrics.jsonl``: step, loss, lr, ..., and val_loss at evaluations);
    ``wait()`` runs it to the end and returns the run directory. Leaving the loop early
    (``break``, or Ctrl-C's KeyboardInterrupt) stops training after its current step with a
    checkpoint, as Ctrl-C does on the command line: continue with
    ``train(resume=run.run_dir, data=...)``. ``metrics`` keeps every step seen."""

    def __init__(self, argv: Sequence[str], run_dir: Optional[PathLike]):
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.metrics: List[Dict[str, Any]] = []
        self._run = _minillm.Run(list(argv))
        # Wait for the first step (or the end), so that a run that cannot start raises here.
        self._first: Optional[str] = next(self._run, None)

    def _lines(self) -> Iterator[str]:
        if self._first is not None:
            first, self._first = self._first, None
            yield first
        yield from self._run

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        finished = False
        try:
            for line in self._lines():
                step = json.loads(line)
                self.metrics.append(step)
                yield step
            finished = True
        finally:
            if not finished:
                # The loop was left early (break, or an exception such as Ctrl-C in its body):
                # the run stops after its current step, with a checkpoint, before going on.
                self._run.stop()
                for line in self._run:
                    self.metrics.append(json.loads(line))

    def wait(self) -> Optional[Path]:
        for _ in self:
            pass
        return self.run_dir

    def stop(self) -> None:
        """Stop after the current step, with a checkpoint."""
        self._run.stop()


def _path(p: PathLike) -> str:
    return os.fspath(p)


def train(
    config: Union[Dict[str, Any], PathLike, None] = None,
    *,
    data: PathLike,
    out: Optional[PathLike] = None,
    resume: Optional[PathLike] = None,
    **settings: Any,
) -> Run:
    """Pretrains a model on ``data`` (shards from :func:`prepare`) into the run directory
    ``out``, as ``minillm train``. ``config`` is a dict of settings or a TOML file; settings
    (``model``, ``arch``, ``context``, ``max_steps``, ``lr``, ``batch_size``, ``seed``, ...:
    ``minillm train --help``) may also be given as keywords and win. ``resume`` continues a run
    from its latest checkpoint. Returns the :class:`Run`; iterate it for the metrics."""
    argv = ["train", "--data", _path(data)]
    if isinstance(config, dict):
        settings = {**config, **settings}
    elif config is not None:
        argv += ["--config", _path(config)]
    if out is not None:
        argv += ["--out", _path(out)]
    if resume is not None:
        argv += ["--resume", _path(resume)]
    return Run(argv + _flags("train", settings), out if out is not None else resume)


def _finetune(command: str, model, data, out, resume, settings) -> Run:
    argv = [command, "--data", _path(data)]
    for flag, value in (("--model", model), ("--out", out), ("--resume", resume)):
        if value is not None:
            argv += [flag, _path(value)]
    return Run(argv + _flags(command, settings), out if out is not None else resume)


def sft(
    model: Optional[PathLike] = None,
    data: PathLike = "",
    *,
    out: Optional[PathLike] = None,
    resume: Optional[PathLike] = None,
    **settings: Any,
) -> Run:
    """Supervised fine-tuning of ``model`` on chats in ``data`` (JSONL), as ``minillm sft``
    (settings: ``val_data``, ``max_steps``, ``lr``, ...). Returns the :class:`Run`."""
    return _finetune("sft", model, data, out, resume, settings)


def dpo(
    model: Optional[PathLike] = None,
    data: PathLike = "",
    *,
    out: Optional[PathLike] = None,
    resume: Optional[PathLike] = None,
    **settings: Any,
) -> Run:
    """Preference tuning (DPO) of a fine-tuned ``model`` on preference pairs in ``data``
    (JSONL), as ``minillm dpo`` (settings: ``beta``, ``val_data``, ``max_steps``, ...)."""
    return _finetune("dpo", model, data, out, resume, settings)


def prepare(inputs: Union[PathLike, Sequence[PathLike]], *, tokenizer: str, out: PathLike, **settings: Any) -> Path:
    """Tokenizes text files (or directories of them) into training and validation shards in
    ``out``, as ``minillm prepare``. ``tokenizer``: ``gpt2``, ``bytes`` or a tokenizer file."""
    files = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    argv = ["prepare", "--input", *map(_path, files), "--tokenizer", tokenizer, "--out", _path(out)]
    Run(argv + _flags("prepare", settings), out).wait()
    return Path(out)


def builtin_corpus() -> str:
    """The built-in corpus of generated stories, dialogues and facts (no download)."""
    return _minillm.builtin_corpus()


def corpus(out: Optional[PathLike] = None, *, tasks: Optional[PathLike] = None) -> Path:
    """Writes the built-in corpus to the file ``out``, or with ``tasks`` the fine-tuning data
    about its world (sft-train.jsonl, sft-val.jsonl, dpo-train.jsonl, dpo-val.jsonl) into that
    directory, as ``minillm corpus``."""
    if out is not None and tasks is None:
        flag, where = "--out", out
    elif tasks is not None and out is None:
        flag, where = "--tasks", tasks
    else:
        raise TypeError("corpus() takes a file `out`, or a directory `tasks=`; exactly one")
    Run(["corpus", flag, _path(where)], None).wait()
    return Path(where)


def quantize(model: PathLike, out: PathLike, type: str, **settings: Any) -> Path:
    """Quantizes ``model`` into one ``.gguf`` file, as ``minillm quantize`` (``type``: q8_0,
    q4_0, q4_K_M, ...; settings ``head_type``, ``pure``)."""
    argv = ["quantize", "--model", _path(model), "--out", _path(out), "--type", type]
    Run(argv + _flags("quantize", settings), out).wait()
    return Path(out)


def export(model: PathLike, out: PathLike, format: str, **settings: Any) -> Path:
    """Writes ``model`` in another tool's format, as ``minillm export``: ``format="hf"`` an HF
    transformers directory, ``"gguf"`` a file llama.cpp runs (settings ``type``, ...)."""
    argv = ["export", "--model", _path(model), "--out", _path(out), "--format", format]
    Run(argv + _flags("export", settings), out).wait()
    return Path(out)


class TextGenerationPipeline:
    """Hugging Face's ``pipeline("text-generation")`` call shape on a minillm model: the same
    argument names and defaults (greedy unless ``do_sample=True``, then temperature 1.0 and
    top-k 50; 20 tokens in all unless ``max_new_tokens`` or ``max_length`` says otherwise), and
    the same output, ``[{"generated_text": ...}]`` per prompt."""

    def __init__(self, model: Model):
        self.model = model

    def __call__(
        self,
        text_inputs: Union[str, Sequence[str]],
        *,
        max_new_tokens: Optional[int] = None,
        max_length: Optional[int] = None,
        do_sample: bool = False,
        temperature: Optional[float] = None,
        top_k: Optional[int] = None,
        top_p: Optional[float] = None,
        repetition_penalty: Optional[float] = None,
        num_return_sequences: int = 1,
        return_full_text: bool = True,
        seed: Optional[int] = None,
    ) -> Any:
        settings = dict(locals())
        if isinstance(text_inputs, str):
            return self._one(text_inputs, settings)
        return [self._one(text, settings) for text in text_inputs]

    def _one(self, prompt: str, a: Dict[str, Any]) -> List[Dict[str, str]]:
        if not a["do_sample"] and a["num_return_sequences"] != 1:
            raise ValueError("greedy decoding gives one sequence: pass do_sample=True for num_return_sequences > 1")
        new = a["max_new_tokens"]
        if new is None:
            prompt_tokens = len(self.model.tokenizer.encode(prompt, special="allow"))
            new = (a["max_length"] if a["max_length"] is not None else 20) - prompt_tokens
            if new < 1:
                raise ValueError(
                    f"the prompt is {prompt_tokens} tokens, which leaves no room under max_length; "
                    "raise max_length or pass max_new_tokens"
                )
        sampling: Dict[str, Any] = {"max_new_tokens": new, "repetition_penalty": a["repetition_penalty"]}
        if a["do_sample"]:
            sampling["temperature"] = 1.0 if a["temperature"] is None else a["temperature"]
            sampling["top_k"] = 50 if a["top_k"] is None else a["top_k"]
            sampling["top_p"] = 1.0 if a["top_p"] is None else a["top_p"]
        else:
            ignored = [k for k in ("temperature", "top_k", "top_p") if a[k] is not None]
            if ignored:
                # What transformers does too: greedy decoding has no use for them.
                warnings.warn(f"{', '.join(ignored)} apply only with do_sample=True: this call decodes greedily")
            sampling["temperature"] = 0.0
        if a["seed"] is not None:
            sampling["seed"] = a["seed"]
        n = a["num_return_sequences"]
        texts = self.model.generate(prompt, num_samples=n, **sampling)
        texts = [texts] if isinstance(texts, str) else texts
        return [{"generated_text": (prompt + t) if a["return_full_text"] else t} for t in texts]


def pipeline(task: str, model: Union[str, "os.PathLike[str]", Model], **kwargs: Any) -> TextGenerationPipeline:
    """``transformers.pipeline``'s entry point for text generation: ``model`` is a
    :class:`Model` or anything :meth:`Model.load` takes (``"gpt2"`` is not special: pass a
    path or an HF hub id such as ``openai-community/gpt2``)."""
    if task != "text-generation":
        raise ValueError(f"minillm's pipeline does {'text-generation'!r}, not {task!r}")
    if kwargs:
        raise TypeError(f"pipeline() does not take {', '.join(sorted(kwargs))} (minillm runs on the CPU it is given)")
    return TextGenerationPipeline(model if isinstance(model, Model) else Model.load(model))
