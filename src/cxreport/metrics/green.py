"""GREEN (Ostmeier et al., 2024; Stanford-AIMI/GREEN): an LLM judge compares a candidate report with
a reference and lists matched findings and errors in six categories, each clinically significant or
insignificant. GREEN = matched / (matched + clinically significant errors).

The judge is a GREEN model (StanfordAIMI/GREEN-RadLlama2-7b, GREEN-Phi2, ...) served through an
OpenAI-compatible endpoint (vLLM, llama.cpp, Ollama) or loaded locally with transformers. The prompt
is GREEN's own (the models were trained on it) and the parsing follows the reference implementation:

- a section is the text after ``[<Category>]:`` up to the next blank line;
- a section starting with "No" counts zero;
- matched findings: the number that opens the section and is followed by a period;
- errors: lines ``(a) ...: <n>.`` to ``(f) ...`` (or ``(1)``-``(6)``), the first number after ": ".

Judges that are not GREEN models (a general instruct model, tried as a stand-in) break that format
in two ways the reference parser misreads, so two rules are added:

- matched findings written as a numbered list (``1. a`` / ``2. b`` / ...) count their items, not
  the first item's number;
- a parse is *implausible* (GREEN None, with a note) when the opening count disagrees with a
  ``;``-separated list after it, or when the error counts are 1, 2, ..., 6 in category order (the
  judge numbered the categories instead of counting errors).

GREEN is 0 when nothing matched. It is None when the answer cannot be read: no ``[Matched
Findings]`` section, or findings matched but no ``[Clinically Significant Errors]`` section (the
reference code meant to return None there, but its parser never reports a missing section).
"""

from __future__ import annotations

import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

SIGNIFICANT, INSIGNIFICANT, MATCHED = "Clinically Significant Errors", "Clinically Insignificant Errors", "Matched Findings"
ERROR_CATEGORIES = (
    "(a) False report of a finding in the candidate",
    "(b) Missing a finding present in the reference",
    "(c) Misidentification of a finding's anatomic location/position",
    "(d) Misassessment of the severity of a finding",
    "(e) Mentioning a comparison that isn't in the reference",
    "(f) Omitting a comparison detailing a change from a prior study",
)

# GREEN's prompt, character for character (including its 4-space indentation): the GREEN models were
# fine-tuned on exactly this text.
_PROMPT = """Objective: Evaluate the accuracy of a candidate radiology report in comparison to a reference radiology report composed by expert radiologists.

    Process Overview: You will be presented with:

    1. The criteria for making a judgment.
    2. The reference radiology report.
    3. The candidate radiology report.
    4. The desired format for your assessment.

    1. Criteria for Judgment:

    For each candidate report, determine:

    The count of clinically significant errors.
    The count of clinically insignificant errors.

    Errors can fall into one of these categories:

    a) False report of a finding in the candidate.
    b) Missing a finding present in the reference.
    c) Misidentification of a finding's anatomic location/position.
    d) Misassessment of the severity of a finding.
    e) Mentioning a comparison that isn't in the reference.
    f) Omitting a comparison detailing a change from a prior study.
    Note: Concentrate on the clinical findings rather than the report's writing style. Evaluate only the findings that appear in both reports.

    2. Reference Report:
    @REFERENCE@

    3. Candidate Report:
    @CANDIDATE@

    4. Reporting Your Assessment:

    Follow this specific format for your output, even if no errors are found:
    ```
    [Explanation]:
    <Explanation>

    [Clinically Significant Errors]:
    (a) <Error Type>: <The number of errors>. <Error 1>; <Error 2>; ...; <Error n>
    ....
    (f) <Error Type>: <The number of errors>. <Error 1>; <Error 2>; ...; <Error n>

    [Clinically Insignificant Errors]:
    (a) <Error Type>: <The number of errors>. <Error 1>; <Error 2>; ...; <Error n>
    ....
    (f) <Error Type>: <The number of errors>. <Error 1>; <Error 2>; ...; <Error n>

    [Matched Findings]:
    <The number of matched findings>. <Finding 1>; <Finding 2>; ...; <Finding n>
    ```
"""


def make_prompt(reference: str, candidate: str) -> str:
    return _PROMPT.replace("@REFERENCE@", reference).replace("@CANDIDATE@", candidate)


def clean_response(text: str) -> str:
    """Strip what a chat model echoes around the assessment (assistant tag, EOS / unk tokens)."""
    if "<|assistant|>" in text:
        text = text.split("<|assistant|>")[-1]
    if "[Explanation]:" in text:
        text = text.split("[Explanation]:")[-1]
    return text.replace("</s>", "").replace("<unk>", "")


def _section(text: str, category: str) -> str | None:
    m = re.search(rf"\[{re.escape(category)}\]:\s*(.*?)(?:\n\s*\n|\Z)", text, re.DOTALL)
    return m.group(1) if m else None


def _error_counts(section: str) -> list[int]:
    counts = [0] * 6
    if section.startswith("No"):
        return counts
    lines = sorted(re.findall(r"\([a-f]\) .*", section))
    labels = [f"({c}) " for c in "abcdef"]
    if not lines:  # GPT-4-style answers number the categories
        lines = sorted(re.findall(r"\([1-6]\) .*", section))
        labels = [f"({i}) " for i in range(1, 7)]
    for pos, label in enumerate(labels):
        for line in lines:
            if line.startswith(label):
                n = re.findall(r"(?<=: )\b\d+\b(?=\.)", line)
                if n:
                    counts[pos] = int(n[0])
    return counts


_ITEM = re.compile(r"^\s*(\d+)[.)]\s+\S", re.MULTILINE)


def _matched_count(section: str) -> tuple[int, str]:
    """(count, note): the count opening the section, or the items of a numbered list."""
    if section.startswith("No"):
        return 0, ""
    numbers = [int(n) for n in _ITEM.findall(section)]
    if len(numbers) >= 2 and numbers == list(range(1, len(numbers) + 1)):
        return len(numbers), "matched findings given as a numbered list: items counted"
    n = re.findall(r"^\b\d+\b(?=\.)", section)
    if not n:
        return 0, ""
    count = int(n[0])
    listed = [x for x in section.split(".", 1)[1].split(";") if x.strip()] if ";" in section else []
    if listed and len(listed) != count:
        return count, f"implausible: matched count {count} but {len(listed)} findings listed"
    return count, ""


def _enumerated(counts: list[int]) -> bool:
    return counts == list(range(1, 7))


@dataclass
class GreenResult:
    green: float | None
    matched: int = 0
    significant: list[int] = field(default_factory=lambda: [0] * 6)
    insignificant: list[int] = field(default_factory=lambda: [0] * 6)
    response: str = ""
    note: str = ""

    def as_dict(self) -> dict:
        return {"green": self.green, "matched": self.matched, "significant_errors": self.significant,
                "insignificant_errors": self.insignificant, "note": self.note}


def parse_green(response: str) -> GreenResult:
    """Counts and score from one GREEN answer."""
    text = clean_response(response)
    matched_sec, sig_sec, insig_sec = (_section(text, c) for c in (MATCHED, SIGNIFICANT, INSIGNIFICANT))
    res = GreenResult(None, response=response)
    res.matched, note = _matched_count(matched_sec) if matched_sec is not None else (0, "")
    res.significant = _error_counts(sig_sec) if sig_sec is not None else [0] * 6
    res.insignificant = _error_counts(insig_sec) if insig_sec is not None else [0] * 6
    if _enumerated(res.significant) or _enumerated(res.insignificant):
        note = "implausible: error counts 1..6 follow the category order (categories numbered, not counted)"
    res.note = note
    if matched_sec is None:
        res.note = "unparseable: no [Matched Findings] section"
    elif note.startswith("implausible"):
        pass  # left out of the mean: the counts cannot be trusted
    elif res.matched == 0:
        res.green = 0.0
    elif sig_sec is None:
        res.note = "unparseable: no [Clinically Significant Errors] section"
    else:
        res.green = green_score(res.matched, res.significant)
    return res


def green_score(matched: int, significant: list[int]) -> float:
    return 0.0 if matched == 0 else matched / (matched + sum(significant))


# --- running the judge ---------------------------------------------------------------------------
@dataclass
class GreenConfig:
    base_url: str | None = None  # OpenAI-compatible endpoint serving the GREEN model
    model: str = "StanfordAIMI/GREEN-RadLlama2-7b"  # served model name, or a local folder / hub id
    local: bool = False  # load ``model`` with transformers instead of calling an endpoint
    api_key_env: str = "OPENAI_API_KEY"
    max_new_tokens: int = 2048  # as the reference implementation
    temperature: float = 0.0  # greedy; still not reproducible with concurrency > 1 (see summarize)
    concurrency: int = 4
    timeout_s: float = 300.0
    http_retries: int = 3
    backoff_s: float = 1.0
    batch_size: int = 4  # local generation
    skip_empty_pairs: bool = True  # both texts empty (an unmentioned region): 1.0 without asking


class GreenScorer:
    def __init__(self, cfg: GreenConfig, generate=None):
        """``generate(prompts) -> answers`` overrides the endpoint / local model (tests, custom runners)."""
        self.cfg = cfg
        self._generate = generate
        if generate is None and not is_green_model(cfg.model):
            log.warning("judge %r is not a GREEN model: GREEN's parsing assumes a model trained on its answer "
                        "format, and other models' scores are not GREEN scores (see the notes per row)", cfg.model)

    def score(self, references: list[str], candidates: list[str]) -> list[GreenResult]:
        if len(references) != len(candidates):
            raise ValueError(f"{len(references)} references but {len(candidates)} candidates")
        out: list[GreenResult | None] = [None] * len(references)
        todo = []
        for i, (ref, cand) in enumerate(zip(references, candidates)):
            if self.cfg.skip_empty_pairs and not (ref or "").strip() and not (cand or "").strip():
                out[i] = GreenResult(1.0, note="both empty: not sent to the model")
            else:
                todo.append(i)
        prompts = [make_prompt(references[i], candidates[i]) for i in todo]
        for i, answer in zip(todo, self._answers(prompts)):
            out[i] = parse_green(answer) if answer is not None else GreenResult(None, note="no answer from the model")
        return out

    def _answers(self, prompts: list[str]) -> list[str | None]:
        if not prompts:
            return []
        if self._generate is not None:
            return list(self._generate(prompts))
        if self.cfg.local:
            return _LocalGreen(self.cfg).generate(prompts)
        if not self.cfg.base_url:
            from cxreport.errors import InputError

            raise InputError("GREEN needs an endpoint (base_url) or local=True with a model folder / hub id")
        from cxreport.llm import ChatClient, EndpointError, LLMConfig

        client = ChatClient(LLMConfig(base_url=self.cfg.base_url, model=self.cfg.model, api_key_env=self.cfg.api_key_env,
                                      max_tokens=self.cfg.max_new_tokens, temperature=self.cfg.temperature, timeout_s=self.cfg.timeout_s, json_mode=False,
                                      http_retries=self.cfg.http_retries, backoff_s=self.cfg.backoff_s))

        def ask(prompt):
            try:
                return client.complete([{"role": "user", "content": prompt}])[0]
            except EndpointError as exc:
                log.warning("GREEN request failed: %s", exc)
                return None

        with ThreadPoolExecutor(max_workers=max(1, self.cfg.concurrency)) as pool:
            return list(pool.map(ask, prompts))


def is_green_model(name: str) -> bool:
    return "green" in name.lower()


def summarize(results: list[GreenResult], cfg: GreenConfig | None = None) -> dict:
    """Mean GREEN over parseable answers, mean error counts per category, and (with ``cfg``) the judge
    and decoding settings the scores depend on."""
    ok = [r for r in results if r.green is not None]
    mean = sum(r.green for r in ok) / len(ok) if ok else None
    per_cat = {cat: sum(r.significant[i] for r in ok) / len(ok) if ok else None for i, cat in enumerate(ERROR_CATEGORIES)}
    out = {"n": len(results), "scored": len(ok), "unparseable": len(results) - len(ok),
           "implausible": sum(r.note.startswith("implausible") for r in results), "green": mean,
           "mean_significant_errors": per_cat, "mean_matched": sum(r.matched for r in ok) / len(ok) if ok else None}
    if cfg is not None:
        # Greedy decoding on a server that batches concurrent requests is not bit-reproducible
        # (batch composition changes the floating-point sums), so the settings are kept with the scores.
        out["judge"] = {"model": cfg.model, "green_model": is_green_model(cfg.model), "temperature": cfg.temperature,
                        "concurrency": 1 if cfg.local else cfg.concurrency,
                        "reproducible": "not guaranteed: temperature 0 answers can differ between runs when "
                                        "requests are batched (concurrency > 1)" if cfg.concurrency > 1 and not cfg.local
                                        else "one request at a time"}
    return out


class _LocalGreen:
    """GREEN model loaded with transformers (a GPU is advisable: these are 2.7B-7B models)."""

    def __init__(self, cfg: GreenConfig):
        from cxreport.errors import require

        self.torch = require("torch", "vlm", "GREEN")
        transformers = require("transformers", "vlm", "GREEN")
        self.cfg = cfg
        self.tok = transformers.AutoTokenizer.from_pretrained(cfg.model, padding_side="left")
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        dtype = self.torch.bfloat16 if self.torch.cuda.is_available() else self.torch.float32
        self.model = transformers.AutoModelForCausalLM.from_pretrained(cfg.model, dtype=dtype)
        self.device = "cuda" if self.torch.cuda.is_available() else "cpu"
        self.model.to(self.device).eval()

    def _chat(self, prompt: str) -> str:
        # GREEN's own tokenizers take {"from": "human", "value": ...} turns; others take role/content.
        for turn in ({"from": "human", "value": prompt}, {"role": "user", "content": prompt}):
            try:
                text = self.tok.apply_chat_template([turn], tokenize=False, add_generation_prompt=True)
            except Exception:  # noqa: BLE001 - a template that does not know this turn format
                continue
            if prompt in text:  # a lenient template can render an unknown turn format as nothing
                return text
        return prompt

    def generate(self, prompts: list[str]) -> list[str]:
        out = []
        for start in range(0, len(prompts), self.cfg.batch_size):
            chunk = [self._chat(p) for p in prompts[start:start + self.cfg.batch_size]]
            enc = self.tok(chunk, return_tensors="pt", padding=True).to(self.device)
            with self.torch.inference_mode():
                gen = self.model.generate(**enc, do_sample=False, max_new_tokens=self.cfg.max_new_tokens,
                                          pad_token_id=self.tok.pad_token_id)
            out.extend(self.tok.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True))
        return out
