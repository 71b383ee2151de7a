"""Validation with quarantine for ``task: text-generation``: conversations in, canonical prompt/completion out.

:func:`load_conversations` is what :func:`keepfit.data.validate.load_and_validate` runs for text-generation. It
reads one of two shapes, told apart by the columns present:

- **chat**: a ``data.messages_column`` column (JSONL key), each value a list of ``{"role", "content"}`` turns
  ending with the assistant's answer, as hosted fine-tuning services take it, with an optional top-level
  ``data.system_column`` string. JSONL and Parquet lists come as lists; a CSV cell holding the JSON list of the
  turns is parsed too.
- **table**: ``data.prompt_column`` and ``data.completion_column`` (plus the optional ``data.system_column``);
  the prompt becomes one user turn, after the system turn when the system cell is not empty. A prompt holding a
  list of turns (JSONL/Parquet) is read as the conversation before the answer, a completion holding a list as
  the one assistant turn of the answer.

Every record ends up kept (canonical ``row``, ``source``, ``text``, ``prompt``, ``completion`` and the usual
``group``/``time``/``split``/``slice:<name>``; see :mod:`keepfit.types`) or quarantined with one reason; the
first rule that fails wins, in this order:

- ``unparseable``      the record could not be parsed (a broken JSON line, a CSV field count)
- ``wrong_type``       a prompt, completion or system cell of the wrong kind (a number, an object)
- ``bad_messages``     messages not a list of objects, a content that is not a string, two system prompts
- ``missing_role``     a turn without a role
- ``unknown_role``     a role other than system/user/assistant (case and outer spaces are forgiven: ``User`` is
                       user); the detail suggests one for the usual aliases (human, bot, gpt, model)
- ``system_not_first`` a system turn after the first turn
- ``no_answer``        no turns, the last turn is not the assistant's, no user turn, or the answer follows
                       another assistant turn (no question right before it)
- ``empty_content``    a turn of the prompt (or the prompt cell) empty or only whitespace
- ``empty_completion`` the answer empty or only whitespace
- ``too_long``         prompt + completion above ``data.max_chars`` characters
- ``bad_split``        a split value other than train/validation/test
- ``too_long``         above ``data.max_tokens`` tokens (or the counter's own ``max_tokens``), when a token
                       counter is given (:class:`TokenCounter`); the count is in the detail

Texts that are not valid UTF-8 are decoded as the loader does for every task (a detected encoding, or U+FFFD
for stray bytes, with a warning). Contents are NFC-normalised, line ends made ``\\n``, NUL bytes removed and
outer whitespace stripped; nothing inside is collapsed, so JSON answers stay byte-exact. ``prompt`` is the JSON
list of the turns before the answer, ``completion`` the answer, ``text`` the prompt's non-system contents joined
by newlines and normalised like classification text (duplicates, slices and drift read it).
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import pyarrow as pa

from keepfit.config import KeepfitConfig
from keepfit.data.load import KIND_LIST, KIND_NAMES, KIND_OBJECT, KIND_TEXT, DataSource, RawChunk, open_source
from keepfit.data.normalize import normalize_text
from keepfit.data.validate import (
    CheckedRows,
    ColumnRoles,
    _bad_records_table,
    _ChunkChecker,
    _did_you_mean,
    _find_column,
    _quarantine_frame,
    _show,
)
from keepfit.errors import DataError
from keepfit.types import COMPLETION, GROUP, PROMPT, ROW, SLICE_PREFIX, SOURCE, SPLIT, TEXT, TIME

__all__ = [
    "Conversation",
    "Problem",
    "TokenCounter",
    "GenerationColumns",
    "ROLES",
    "GENERATION_REASONS",
    "parse_messages",
    "conversation_from_messages",
    "conversation_from_table",
    "resolve_generation_columns",
    "load_conversations",
]

ROLES = ("system", "user", "assistant")
GENERATION_REASONS = (
    "unparseable",
    "wrong_type",
    "bad_messages",
    "missing_role",
    "unknown_role",
    "system_not_first",
    "no_answer",
    "empty_content",
    "empty_completion",
    "too_long",
    "bad_split",
)
# roles other tools write for the same parties (ShareGPT: human/gpt; Gemini: model); quarantined, with a hint
_ROLE_ALIASES = {
    "human": "user",
    "customer": "user",
    "question": "user",
    "bot": "assistant",
    "gpt": "assistant",
    "model": "assistant",
    "ai": "assistant",
    "chatbot": "assistant",
    "answer": "assistant",
    "developer": "system",
    "instruction": "system",
}
_TOOL_ROLES = frozenset({"tool", "function", "ipython", "tool_call", "tool_result"})
Shape = Literal["chat", "table"]


class TokenCounter(Protocol):
    """Counts the tokens of whole conversations in the model's chat template.

    Called with N prompts (lists of ``{"role", "content"}``) and their N completions; returns N integers. A
    counter may carry a ``max_tokens`` attribute (the model's context length), used when ``data.max_tokens`` is
    empty.
    """

    def __call__(self, prompts: list[list[dict[str, str]]], completions: list[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class Conversation:
    """One checked example: the turns before the answer, and the answer (None: a prompt without one)."""

    prompt: list[dict[str, str]]
    completion: str | None

    @property
    def chars(self) -> int:
        return sum(len(m["content"]) for m in self.prompt) + len(self.completion or "")


@dataclass(frozen=True)
class Problem:
    """Why an example cannot be used: a reason code (see the module docstring) and a sentence."""

    reason: str
    detail: str


# ------------------------------------------------------------------------------------------------ one example


def _clean(content: str) -> str:
    """NFC, ``\\n`` line ends, no NUL bytes, outer whitespace stripped; nothing collapsed inside."""
    if "\r" in content:
        content = content.replace("\r\n", "\n").replace("\r", "\n")
    content = content.replace("\x00", "")
    if not content.isascii() and not unicodedata.is_normalized("NFC", content):
        content = unicodedata.normalize("NFC", content)
    return content.strip()


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if value is None:
        return "null"
    return "text"


def _role_problem(role: Any, i: int, n: int) -> Problem:
    where = f"message {i} of {n}"
    if not isinstance(role, str):
        return Problem(
            "unknown_role",
            f"{where} has role {_show(json.dumps(role))} ({_kind_of(role)}), expected system, user or assistant",
        )
    key = role.strip().casefold()
    if key in _TOOL_ROLES:
        return Problem(
            "unknown_role",
            f'{where} has role "{_show(role)}": tool and function turns are not '
            "supported; remove them, or fold their output into a user turn",
        )
    hint = f' (did you mean "{_ROLE_ALIASES[key]}"?)' if key in _ROLE_ALIASES else ""
    return Problem("unknown_role", f'{where} has role "{_show(role)}", expected system, user or assistant{hint}')


def parse_messages(value: Any, what: str = "messages") -> list[dict[str, str]] | Problem:
    """The turns of a messages value: a list of objects with a known role and a string content.

    Roles are matched ignoring case and outer spaces; contents are cleaned (NFC, ``\\n`` line ends, stripped).
    """
    if not isinstance(value, list):
        return Problem("bad_messages", f"{what} is {_kind_of(value)}, expected a list of {{role, content}} turns")
    out: list[dict[str, str]] = []
    n = len(value)
    for i, item in enumerate(value, start=1):
        where = f"message {i} of {n}"
        if not isinstance(item, dict):
            return Problem("bad_messages", f"{where} is {_kind_of(item)}, expected an object {{role, content}}")
        if item.get("role") is None:
            keys = ", ".join(map(str, list(item)[:5])) or "none"
            return Problem("missing_role", f"{where} has no role (keys: {keys}); expected system, user or assistant")
        role = item["role"]
        key = role.strip().casefold() if isinstance(role, str) else None
        if key not in ROLES:
            return _role_problem(role, i, n)
        content = item.get("content")
        if not isinstance(content, str):
            found = "has no content" if "content" not in item else f"content is {_kind_of(content)}"
            hint = " (a list of parts: keepfit trains on text turns only)" if isinstance(content, list) else ""
            return Problem("bad_messages", f"{where} ({key}): {found}{hint}, expected a string")
        out.append({"role": str(key), "content": _clean(content)})
    return out


def _with_system(turns: list[dict[str, str]], system: str | None) -> list[dict[str, str]] | Problem:
    if not system:
        return turns
    if turns and turns[0]["role"] == "system":
        if turns[0]["content"] == system:
            return turns
        return Problem(
            "bad_messages", "both the system key and a system message give a system prompt, and they differ; keep one"
        )
    return [{"role": "system", "content": system}, *turns]


def _conversation(
    turns: list[dict[str, str]], *, require_answer: bool, prompt_name: str = "", completion_name: str = ""
) -> Conversation | Problem:
    """The rules on a whole conversation (order, emptiness) once every turn is well formed."""
    n = len(turns)
    later_system = next((i for i, t in enumerate(turns[1:], start=2) if t["role"] == "system"), None)
    if later_system is not None:
        return Problem(
            "system_not_first", f"message {later_system} of {n} is a system turn; a system turn may only come first"
        )
    if n == 0:
        return Problem("no_answer", "the conversation has no turns")
    roles = [t["role"] for t in turns]
    if "user" not in roles:
        return Problem("no_answer", f"the conversation has no user turn (roles: {', '.join(roles)})")
    answered = roles[-1] == "assistant"
    if not answered and require_answer:
        return Problem(
            "no_answer", f"the conversation ends with a {roles[-1]} turn, expected the assistant's answer last"
        )
    prompt = turns[:-1] if answered else turns
    if prompt[-1]["role"] != "user":
        return Problem(
            "no_answer", f"the answer (message {n}) follows an assistant turn; expected a user turn right before it"
        )
    empty = next((i for i, t in enumerate(prompt, start=1) if not t["content"]), None)
    if empty is not None:
        what = prompt_name or f"message {empty} of {n} ({prompt[empty - 1]['role']})"
        return Problem("empty_content", f"{what} is empty or only whitespace")
    completion = turns[-1]["content"] if answered else None
    if answered and not completion:
        return Problem(
            "empty_completion",
            f"{completion_name or 'the answer (the last assistant turn)'} is empty or only whitespace",
        )
    return Conversation(prompt, completion)


def conversation_from_messages(
    messages: Any, system: str | None = None, *, require_answer: bool = True
) -> Conversation | Problem:
    """One chat-shape example: ``messages`` (a list of turns) and an optional top-level system prompt."""
    turns = parse_messages(messages)
    if isinstance(turns, Problem):
        return turns
    turns = _with_system(turns, _clean(system) if system else None)
    if isinstance(turns, Problem):
        return turns
    return _conversation(turns, require_answer=require_answer)


def conversation_from_table(
    prompt: Any, completion: Any, system: str | None = None, *, require_answer: bool = True
) -> Conversation | Problem:
    """One table-shape example: a prompt (text, or a list of turns) and a completion (text, or a list holding
    the one assistant turn); ``completion`` None with ``require_answer=False`` is a prompt without answer."""
    if prompt is None:
        return Problem("empty_content", "prompt is missing (no value)")
    if completion is None and require_answer:
        return Problem("empty_completion", "completion is missing (no value)")
    if isinstance(prompt, str):
        turns: list[dict[str, str]] | Problem = [{"role": "user", "content": _clean(prompt)}]
        prompt_name = "prompt"
    else:
        turns, prompt_name = parse_messages(prompt, "prompt"), ""
    if isinstance(turns, Problem):
        return turns
    turns = _with_system(turns, _clean(system) if system else None)
    if isinstance(turns, Problem):
        return turns
    if completion is None:
        return _conversation(turns, require_answer=False, prompt_name=prompt_name)
    if isinstance(completion, str):
        answer = [{"role": "assistant", "content": _clean(completion)}]
    else:
        parsed = parse_messages(completion, "completion")
        if isinstance(parsed, Problem):
            return parsed
        if len(parsed) != 1 or parsed[0]["role"] != "assistant":
            roles = ", ".join(t["role"] for t in parsed) or "none"
            return Problem("bad_messages", f"completion holds turns {roles}; expected exactly one assistant turn")
        answer = parsed
    return _conversation([*turns, *answer], require_answer=True, prompt_name=prompt_name, completion_name="completion")


# ------------------------------------------------------------------------------------------------ columns


@dataclass(frozen=True)
class GenerationColumns:
    """Which file columns feed a text-generation example, and the shape they make."""

    shape: Shape
    roles: ColumnRoles  # text: the messages (chat) or prompt (table) column; label: the completion column
    system: str | None = None

    @property
    def read_columns(self) -> list[str]:
        return list(dict.fromkeys([*self.roles.read_columns, *([self.system] if self.system else [])]))


def _neither_shape(src: DataSource, config: KeepfitConfig, problems: list[str]) -> DataError:
    d = config.data
    hint = ""
    if src.columns and set(src.columns) <= {"role", "content", "name"}:
        hint = (
            " The records look like single turns: a JSON array of turns split over lines, or one turn per "
            'line? Write one conversation per line: {"messages": [{"role": ..., "content": ...}, ...]}.'
        )
    elif any(c.casefold() in ("conversations", "conversation", "dialog", "chat") for c in src.columns):
        hint = " A column looks like a conversation: point data.messages_column at it."
    return DataError(
        f"{src.name}: text-generation expects a {d.messages_column!r} column (chat shape: a list of "
        f"{{role, content}} turns ending with the assistant's answer) or {d.prompt_column!r} and "
        f"{d.completion_column!r} columns (table shape); "
        + ("; ".join(problems) + ". " if problems else "")
        + f"Columns found: {src.columns}.{hint} Set data.messages_column, or data.prompt_column and "
        "data.completion_column, in keepfit.yaml (or --set data.prompt_column=NAME)."
    )


def resolve_generation_columns(
    src: DataSource, config: KeepfitConfig, *, require_answer: bool = True
) -> tuple[GenerationColumns, list[str]]:
    """Tell the shape from the columns and map the configured names to the file's; DataError when neither shape
    is there (naming what was expected and what came) or a configured group/time/split/slice column is missing."""
    d = config.data
    warnings: list[str] = []
    problems: list[str] = []

    def find(key: str, name: str | None, required: bool) -> str | None:
        if not name:
            return None
        found, warning = _find_column(name, src.columns)
        if warning:
            warnings.append(f"{src.name}: {warning}")
        if found is None and required:
            problems.append(f"data.{key} is {name!r}, which is not a column{_did_you_mean(name, src.columns)}")
        return found

    messages = find("messages_column", d.messages_column, False)
    shape: Shape = "chat" if messages else "table"
    prompt = completion = None
    if shape == "table":
        prompt = find("prompt_column", d.prompt_column, True)
        completion = find("completion_column", d.completion_column, require_answer)
        if problems:
            raise _neither_shape(src, config, problems)
    elif _find_column(d.prompt_column, src.columns)[0] and _find_column(d.completion_column, src.columns)[0]:
        warnings.append(
            f"{src.name}: both a {messages!r} column and prompt/completion columns; the conversations "
            f"in {messages!r} are used"
        )
    roles = ColumnRoles(
        text=messages or prompt or "",
        label=completion,
        group=find("group_column", d.group_column, True),
        time=find("time_column", d.time_column, True),
        split=find("split_column", d.split_column, True),
        slices={name: col for name in d.slice_columns if (col := find("slice_columns", name, True))},
    )
    if problems:
        raise DataError(
            f"{src.name}: expected columns are missing: " + "; ".join(problems) + f". Columns found: {src.columns}. "
            "Set the names in keepfit.yaml or pass --set data.group_column=NAME."
        )
    system = find("system_column", d.system_column, False)
    _check_table_types(src, roles, shape)
    return GenerationColumns(shape, roles, system), warnings


def _check_table_types(src: DataSource, roles: ColumnRoles, shape: Shape) -> None:
    """Typed files (Parquet, datasets) declare a type per column: prompt and completion must hold text or turns."""
    if shape != "table":
        return
    for key, name in (("prompt_column", roles.text), ("completion_column", roles.label)):
        kind = src.column_types.get(name or "")
        if kind is not None and not any(k in kind.lower() for k in ("string", "binary", "utf8", "list", "struct")):
            raise DataError(
                f"{src.name}: column {name!r} (data.{key}) holds {kind}, expected text (strings). "
                f"Column types: {src.column_types}. Point data.{key} at the column with the text."
            )


# ------------------------------------------------------------------------------------------------ chunk check


def _cell(value: str | None, kind: int, parse_text: bool) -> Any:
    """The original value of a loaded cell: lists and objects come back from their JSON text; with
    ``parse_text``, a text holding a JSON list (the messages column of a CSV) is parsed as well."""
    if value is None:
        return None
    if kind in (KIND_LIST, KIND_OBJECT) or (parse_text and kind == KIND_TEXT and value.lstrip()[:1] == "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _kinds(chunk: RawChunk, column: str | None) -> np.ndarray:
    codes = chunk.kinds.get(column) if column else None
    return codes if codes is not None else np.zeros(len(chunk), dtype=np.int8)


def _values(chunk: RawChunk, column: str | None) -> list[str | None]:
    return chunk.columns[column].to_pylist() if column else [None] * len(chunk)


@dataclass(frozen=True)
class _Cells:
    """The cells of one chunk a generation example reads, with the kind codes of their original values."""

    main: list[str | None]
    main_kinds: np.ndarray
    answers: list[str | None]
    answer_kinds: np.ndarray
    systems: list[str | None]
    system_kinds: np.ndarray

    @classmethod
    def of(cls, chunk: RawChunk, columns: GenerationColumns) -> _Cells:
        roles = columns.roles
        return cls(
            _values(chunk, roles.text),
            _kinds(chunk, roles.text),
            _values(chunk, roles.label),
            _kinds(chunk, roles.label),
            _values(chunk, columns.system),
            _kinds(chunk, columns.system),
        )


class _ConversationChecker(_ChunkChecker):
    """The generation rules on one chunk; the group/time/split/slice columns and the quarantine bookkeeping are
    the classification checker's own."""

    def __init__(
        self,
        config: KeepfitConfig,
        columns: GenerationColumns,
        source: str,
        *,
        require_answer: bool,
        count_tokens: TokenCounter | None,
    ) -> None:
        super().__init__(config, columns.roles, None, source)
        self.columns = columns
        self.require_answer = require_answer
        self.count_tokens = count_tokens
        self.token_limit = config.data.max_tokens or getattr(count_tokens, "max_tokens", None)
        self.role_case_fixed = 0

    def check(self, chunk: RawChunk) -> tuple[pa.Table, list[pa.Table]]:
        n = len(chunk)
        self.alive = np.ones(n, dtype=bool)
        self.quarantined: list[pa.Table] = []
        self.chunk = chunk
        roles = self.columns.roles
        self.raw_text = chunk.columns[roles.text] if n else pa.array([], pa.string())
        self.raw_label = chunk.columns[roles.label] if n and roles.label else pa.nulls(n, pa.string())
        if chunk.unparseable:
            self.quarantined.append(_bad_records_table(chunk, self.source))
        schema = kept_schema(roles)
        if n == 0:
            return schema.empty_table(), self.quarantined
        conversations = self._conversations(chunk)
        self._reject_long(conversations)
        extra = self._extra_columns(chunk)
        self._reject_many_tokens(conversations)
        keep = np.flatnonzero(self.alive)
        kept = _alive(conversations, keep)
        texts = ["\n".join(m["content"] for m in c.prompt if m["role"] != "system") for c in kept]
        normalized, _ = normalize_text(pa.array(texts, pa.string()))
        mask = pa.array(self.alive)
        table = pa.table(
            {
                ROW: pa.array(chunk.rows[keep], pa.int64()),
                SOURCE: pa.array([self.source] * len(keep), pa.string()),
                TEXT: normalized,
                PROMPT: pa.array([json.dumps(c.prompt, ensure_ascii=False) for c in kept], pa.string()),
                COMPLETION: pa.array([c.completion for c in kept], pa.string()),
                **{name: arr.filter(mask) for name, arr in extra.items()},
            }
        )
        return table.cast(schema), self.quarantined

    def _conversations(self, chunk: RawChunk) -> list[Conversation | None]:
        """Parse every record; quarantine the ones that break a rule (one reason each, grouped by reason)."""
        cells = _Cells.of(chunk, self.columns)
        out: list[Conversation | None] = []
        problems: dict[str, list[tuple[int, str]]] = {}
        for i in range(len(chunk)):
            found = self._one(i, cells)
            if isinstance(found, Problem):
                problems.setdefault(found.reason, []).append((i, found.detail))
                out.append(None)
            else:
                out.append(found)
        for reason, items in problems.items():
            mask = np.zeros(len(chunk), dtype=bool)
            mask[[i for i, _ in items]] = True
            self._reject(mask, reason, [d for _, d in items])
        return out

    def _one(self, i: int, cells: _Cells) -> Conversation | Problem:
        system, system_kind = cells.systems[i], int(cells.system_kinds[i])
        if system is not None and system_kind != KIND_TEXT:
            return Problem("wrong_type", f"system is {KIND_NAMES[system_kind]} ({_show(system)}), expected a string")
        main, main_kind, answer = cells.main[i], int(cells.main_kinds[i]), cells.answers[i]
        if any("\x00" in v for v in (main, answer, system) if v is not None):
            self.n_nul += 1
        if self.columns.shape == "chat":
            return self._chat_example(main, main_kind, system)
        return self._table_example(main, main_kind, answer, int(cells.answer_kinds[i]), system)

    def _chat_example(self, main: str | None, kind: int, system: str | None) -> Conversation | Problem:
        if main is None:
            return Problem("bad_messages", "messages is missing (no value), expected a list of {role, content} turns")
        value = _cell(main, kind, parse_text=True)
        if isinstance(value, str):
            what = KIND_NAMES[kind] if kind != KIND_TEXT else "text"
            return Problem(
                "bad_messages", f"messages is {what} ({_show(value)}), expected a list of {{role, content}} turns"
            )
        self.role_case_fixed += _case_variants(value)
        if "\x00" not in main and _holds_nul(value):  # a list cell's JSON text writes NUL as an escape
            self.n_nul += 1
        return conversation_from_messages(value, system, require_answer=self.require_answer)

    def _table_example(
        self, prompt: str | None, prompt_kind: int, answer: str | None, answer_kind: int, system: str | None
    ) -> Conversation | Problem:
        for name, value, kind in (("prompt", prompt, prompt_kind), ("completion", answer, answer_kind)):
            if value is not None and kind not in (KIND_TEXT, KIND_LIST):
                return Problem(
                    "wrong_type", f"{name} is {KIND_NAMES[kind]} ({_show(value)}), expected a string; write it as text"
                )
        has_answer_column = self.columns.roles.label is not None
        return conversation_from_table(
            _cell(prompt, prompt_kind, parse_text=False),
            _cell(answer, answer_kind, parse_text=False),
            system,
            require_answer=self.require_answer and has_answer_column,
        )

    def _reject_long(self, conversations: list[Conversation | None]) -> None:
        limit = self.config.data.max_chars
        chars = np.array([c.chars if c is not None else 0 for c in conversations], dtype=np.int64)
        long = (chars > limit) & self.alive
        if long.any():
            self._reject(
                long,
                "too_long",
                [
                    f"the conversation has {int(chars[i]):,} characters (prompt and completion), more than "
                    f"data.max_chars={limit:,}; shorten it or raise data.max_chars"
                    for i in np.flatnonzero(long)
                ],
            )

    def _reject_many_tokens(self, conversations: list[Conversation | None]) -> None:
        if self.count_tokens is None or not self.token_limit or not self.alive.any():
            return
        idx = np.flatnonzero(self.alive)
        picked = _alive(conversations, idx)
        counts = np.asarray(
            self.count_tokens([c.prompt for c in picked], [c.completion or "" for c in picked]),
            dtype=np.int64,
        ).reshape(-1)
        if len(counts) != len(idx):
            raise DataError(
                f"count_tokens returned {len(counts)} counts for {len(idx)} conversations; expected one per "
                "conversation (a bug in the token counter)"
            )
        limit = int(self.token_limit)
        over = counts > limit
        if not over.any():
            return
        where = "data.max_tokens" if self.config.data.max_tokens else "the model's limit"
        mask = np.zeros(len(self.alive), dtype=bool)
        mask[idx[over]] = True
        self._reject(
            mask,
            "too_long",
            [
                f"the conversation has {int(n):,} tokens in the model's chat template, more than {where}={limit:,}; "
                "shorten it" + (" or raise data.max_tokens" if self.config.data.max_tokens else "")
                for n in counts[over]
            ],
        )


def _alive(conversations: list[Conversation | None], positions: np.ndarray) -> list[Conversation]:
    """The conversations at ``positions`` (rows still alive, so every one parsed)."""
    return [c for c in (conversations[i] for i in positions) if c is not None]


def _holds_nul(value: Any) -> bool:
    """Whether a turn's content holds a NUL byte (JSON writes it as an escape, so the raw cell does not show it)."""
    return isinstance(value, list) and any(
        isinstance(m, dict) and isinstance(m.get("content"), str) and "\x00" in m["content"] for m in value
    )


def _case_variants(value: Any) -> int:
    """How many turns name a known role in another case or with spaces (``User``): read as the role, counted."""
    if not isinstance(value, list):
        return 0
    return sum(
        1
        for m in value
        if isinstance(m, dict)
        and isinstance(m.get("role"), str)
        and m["role"] not in ROLES
        and m["role"].strip().casefold() in ROLES
    )


def optional_fields(roles: ColumnRoles) -> list[pa.Field]:
    """The kept rows' optional canonical columns (group, time, split, slice:<name>) the roles name, as strings;
    shared by the task kinds whose loaders build their own schema (text-generation, images)."""
    fields = [pa.field(name, pa.string()) for present, name in
              ((roles.group, GROUP), (roles.time, TIME), (roles.split, SPLIT)) if present]
    return fields + [pa.field(SLICE_PREFIX + s, pa.string()) for s in roles.slices]


def kept_schema(roles: ColumnRoles) -> pa.Schema:
    """The Arrow schema of kept text-generation rows (the canonical columns of :mod:`keepfit.types`)."""
    fields = [
        pa.field(ROW, pa.int64()),
        pa.field(SOURCE, pa.string()),
        pa.field(TEXT, pa.string()),
        pa.field(PROMPT, pa.string()),
        pa.field(COMPLETION, pa.string()),
    ]
    return pa.schema(fields + optional_fields(roles))


# ------------------------------------------------------------------------------------------------ entry point


def load_conversations(
    path: str | Path,
    config: KeepfitConfig,
    *,
    require_answer: bool = True,
    split: str | None = None,
    count_tokens: TokenCounter | None = None,
) -> CheckedRows:
    """Read ``path`` as text-generation examples and keep or quarantine every record (rules: module docstring).

    ``require_answer=False`` keeps prompts without an answer (completion null: a conversation ending with a user
    turn, or a table without the completion column). ``count_tokens`` adds the token-length rule. Raises
    DataError for file-level problems only (missing file, neither shape's columns, no rows).
    """
    src = open_source(path, config, split=split)
    columns, warnings = resolve_generation_columns(src, config, require_answer=require_answer)
    checker = _ConversationChecker(config, columns, src.name, require_answer=require_answer, count_tokens=count_tokens)
    schema = kept_schema(columns.roles)
    kept_parts: list[pa.Table] = []
    quarantine_parts: list[pa.Table] = []
    n_in = 0
    for chunk in src.chunks(columns.read_columns):
        n_in += len(chunk) + len(chunk.unparseable)
        kept, quarantined = checker.check(chunk)
        kept_parts.append(kept)
        quarantine_parts.extend(quarantined)
    if n_in == 0:
        raise DataError(
            f"{src.name}: no data rows (columns found: {src.columns}). Expected at least one conversation. Point "
            "to the file with the data."
        )
    warnings += src.warnings
    if checker.role_case_fixed:
        warnings.append(
            f"{src.name}: {checker.role_case_fixed} turn(s) name a role in another case or with spaces "
            "(such as 'User'); read as system/user/assistant"
        )
    if checker.n_nul:
        warnings.append(f"{src.name}: {checker.n_nul} record(s) contained NUL bytes; the NUL bytes were removed")
    kept_table = pa.concat_tables(kept_parts).combine_chunks() if kept_parts else schema.empty_table()
    return CheckedRows(kept_table.to_pandas(), _quarantine_frame(quarantine_parts), n_in, [], warnings, src.name)
