"""Scenario files: what the harness says, to which agent, and what "good enough" means (docs/scenarios.md).

A scenario is a YAML file validated with pydantic. Every problem is reported as one line
``file:line: field: problem (allowed: ...)`` — the line comes from the YAML node the field was read from
(``yaml.compose`` keeps each node's ``start_mark``), so a user can jump straight to the mistake.

Public API: ``load_scenario(path) -> Scenario``, ``load_scenarios(dir) -> list[Scenario]``, ``Scenario.fingerprint``.
The measuring side never imports ``harness.agent``: the agent profile and its overrides travel as plain data.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo, field_validator
from pydantic import model_validator

from harness.errors import VlhError

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
NOISE_TYPES = ("white", "pink")
#: where the reference agent keeps its profiles (read as data files, never imported)
PROFILES_DIR = Path(__file__).resolve().parents[1] / "agent" / "profiles"  # read, never imported
PROFILE_SUFFIXES = (".yaml", ".yml")


def _allowed(text: str) -> Any:
    return {"allowed": text}


class _Model(BaseModel):
    # strict: YAML already gives native types; "600" must not silently become 600, nor `yes` become 1
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Noise(_Model):
    type: Literal["white", "pink"] = Field(json_schema_extra=_allowed(" or ".join(NOISE_TYPES)))
    snr_db: float = Field(ge=-10, le=60, json_schema_extra=_allowed("a number of dB from -10 to 60 (speech RMS over noise RMS)"))


class Turn(_Model):
    say: str | None = Field(None, min_length=1, json_schema_extra=_allowed("the text to speak (by engine:, espeak-ng by default), in quotes if it could be read as a number or yes/no"))
    engine: str | None = Field(None, min_length=1, pattern=r"^[A-Za-z0-9_\-]+$", json_schema_extra=_allowed("a TTS engine: espeak, flite or festival"))
    voice: str | None = Field(None, min_length=1, pattern=r"^[A-Za-z0-9_/\-]+$", json_schema_extra=_allowed("a voice of the turn's engine, e.g. en-us or en-gb-x-rp (espeak), slt or awb (flite), slt or kal (festival)"))
    rate: int | None = Field(None, ge=80, le=450, json_schema_extra=_allowed("words per minute from 80 to 450"))
    wav: Path | None = Field(None, json_schema_extra=_allowed("a WAV file path relative to the scenario file"))
    level_dbfs: float | None = Field(None, ge=-60, le=-3, json_schema_extra=_allowed("the speech RMS level in dBFS from -60 to -3"))
    noise: Noise | None = Field(None, json_schema_extra=_allowed("{type: white|pink, snr_db: N}"))
    pause_after_ms: int = Field(500, ge=0, le=60000, json_schema_extra=_allowed("milliseconds of silence from 0 to 60000 after the agent's reply ends"))
    barge_in_after_ms: int | None = Field(None, ge=0, le=60000, json_schema_extra=_allowed("milliseconds from 0 to 60000 into the previous turn's reply at the ear"))
    timeout_s: float | None = Field(None, gt=0, le=600, json_schema_extra=_allowed("seconds, more than 0 and at most 600 (overrides the scenario's timeout_s)"))

    @field_validator("wav", mode="before")
    @classmethod
    def _wav_path(cls, v: Any, info: ValidationInfo) -> Any:
        if v is None:
            return v
        if not isinstance(v, str) or not v.strip():
            raise ValueError("must be a file path (text)")
        base = Path((info.context or {}).get("base_dir", "."))
        path = (base / v).resolve()
        if not path.is_file():
            raise ValueError(f"file not found: {path}")
        with open(path, "rb") as fh:
            head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise ValueError(f"not a WAV file (no RIFF/WAVE header): {path}")
        return path

    @model_validator(mode="after")
    def _one_source(self) -> "Turn":
        if (self.say is None) == (self.wav is None):
            both = "both" if self.say is not None else "neither"
            raise ValueError(f"a turn needs exactly one of say: or wav:, this one has {both}")
        if self.wav is not None and (self.voice is not None or self.rate is not None or self.engine is not None):
            raise ValueError("engine:, voice: and rate: apply to say: turns only, this turn plays a wav:")
        return self


class AgentSpec(_Model):
    """The reference-agent profile used when no --agent URL is given, plus overrides passed through as data."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)
    profile: str = Field("typical", pattern=NAME_RE.pattern, json_schema_extra=_allowed("a reference-agent profile name"))

    @model_validator(mode="after")
    def _plain_overrides(self) -> "AgentSpec":
        for key, value in (self.model_extra or {}).items():
            if not re.fullmatch(r"[a-z][a-z0-9_]*", key):
                raise _At((key,), "a setting name is lower-case snake_case, e.g. tts_ttfb_ms")
            items = value if isinstance(value, list) else [value]
            if not all(isinstance(x, (str, int, float, bool)) for x in items):
                raise _At((key,), "a setting value is a number, text, true/false or a list of those")
        return self

    def overrides(self) -> dict[str, Any]:
        """The settings given beside `profile:` (passed to the reference agent as they are)."""
        return dict(self.model_extra or {})

    def as_data(self) -> dict[str, Any]:
        return {"profile": self.profile, **self.overrides()}


class SLO(_Model):
    ttfa_p50_ms: float | None = Field(None, ge=0, json_schema_extra=_allowed("milliseconds ≥ 0"))
    ttfa_p95_ms: float | None = Field(None, ge=0, json_schema_extra=_allowed("milliseconds ≥ 0"))
    no_response_rate: float | None = Field(None, ge=0, le=1, json_schema_extra=_allowed("a fraction from 0 to 1"))
    stutter_gaps_per_min: float | None = Field(None, ge=0, json_schema_extra=_allowed("gaps per minute of reply ≥ 0"))
    interruption_p50_ms: float | None = Field(None, ge=0, json_schema_extra=_allowed("milliseconds ≥ 0"))
    interruption_p95_ms: float | None = Field(None, ge=0, json_schema_extra=_allowed("milliseconds ≥ 0"))

    def thresholds(self) -> dict[str, float]:
        """The SLOs that are set, in declaration order."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class Scenario(_Model):
    name: str = Field(pattern=NAME_RE.pattern, json_schema_extra=_allowed("lower-case letters, digits, - and _, starting with a letter or digit, at most 64"))
    description: str = Field("", json_schema_extra=_allowed("free text"))
    turns: list[Turn] = Field(min_length=1, max_length=200, json_schema_extra=_allowed("a list of 1 to 200 turns"))
    repetitions: int = Field(1, ge=1, le=1000, json_schema_extra=_allowed("a whole number from 1 to 1000 (times the list of turns is played)"))
    timeout_s: float = Field(15.0, gt=0, le=600, json_schema_extra=_allowed("seconds per turn, more than 0 and at most 600"))
    agent: AgentSpec = Field(default_factory=AgentSpec, json_schema_extra=_allowed("a profile name, or {profile: NAME, <setting>: <value>, ...}"))
    slo: SLO = Field(default_factory=SLO, json_schema_extra=_allowed("{ttfa_p50_ms, ttfa_p95_ms, no_response_rate, stutter_gaps_per_min, interruption_p50_ms, interruption_p95_ms}"))
    transport: Literal["webrtc", "loopback", "ws-telephony"] | None = Field(None, json_schema_extra=_allowed("webrtc, loopback or ws-telephony (vlh run --transport; the command line wins)"))
    provider: Literal["twilio", "telnyx", "plivo", "exotel"] | None = Field(None, json_schema_extra=_allowed("twilio, telnyx, plivo or exotel (with transport: ws-telephony)"))

    _source: Path | None = PrivateAttr(None)

    @field_validator("agent", mode="before")
    @classmethod
    def _agent_shorthand(cls, v: Any) -> Any:
        return {"profile": v} if isinstance(v, str) else v

    @model_validator(mode="after")
    def _coherent(self) -> "Scenario":
        if self.provider is not None and self.transport != "ws-telephony":
            raise _At(("provider",), "provider: names a phone provider; it goes with transport: ws-telephony")
        if self.turns[0].barge_in_after_ms is not None:
            raise _At(("turns", 0, "barge_in_after_ms"), "the first turn has no agent reply to interrupt; put barge_in_after_ms on a later turn")
        if (self.slo.interruption_p95_ms is not None or self.slo.interruption_p50_ms is not None) and not any(
            t.barge_in_after_ms is not None for t in self.turns
        ):
            raise _At(("slo",), "interruption SLOs need a barge-in turn (a turn with barge_in_after_ms)")
        return self

    @property
    def source(self) -> Path | None:
        """The file this scenario was read from."""
        return self._source

    @property
    def barge_in(self) -> bool:
        return any(t.barge_in_after_ms is not None for t in self.turns)

    def played_turns(self, n: int | None = None) -> list[Turn]:
        """The turns one call plays, in order: the list of turns `repetitions` times; with `n` (``vlh run
        --turns N``), exactly N turns, cycling through the list. The one place both `vlh run --scenario` and
        `vlh suite` take their turns from."""
        count = len(self.turns) * self.repetitions if n is None else int(n)
        return [self.turns[i % len(self.turns)] for i in range(count)]

    @property
    def fingerprint(self) -> str:
        """A hash of the stimulus (turns, repetitions, timeouts, WAV contents): nights are only compared when equal.

        The agent profile and the SLOs are left out on purpose: the agent is what changes between nights (that is
        what the suite watches), and tightening an SLO does not change what was measured.
        """
        stim = self.model_dump(mode="json", include={"turns", "repetitions", "timeout_s"})
        for t, raw in zip(self.turns, stim["turns"]):
            if raw.get("engine") is None:  # no engine: the stimulus (and its fingerprint) as before engines existed
                raw.pop("engine", None)
            if t.wav is not None:
                raw["wav"] = hashlib.sha256(Path(t.wav).read_bytes()).hexdigest()
        return hashlib.sha256(json.dumps(stim, sort_keys=True).encode()).hexdigest()[:16]


class _At(ValueError):
    """A model-level problem that belongs to a specific field (reported on that field's line)."""

    def __init__(self, loc: tuple, message: str):
        super().__init__(message)
        self.loc = loc


# ----------------------------------------------------------------------------------------------------------------
# loading


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate one scenario file; raise VlhError with one ``file:line: field: problem`` line per problem."""
    scenario, problems = _load(Path(path))
    if problems:
        raise VlhError(_join(problems))
    return scenario


def load_scenarios(directory: str | Path) -> list[Scenario]:
    """Every ``*.yaml``/``*.yml`` in `directory` (not recursive), sorted by file name; all problems in one error."""
    directory = Path(directory)
    if directory.is_file():
        return [load_scenario(directory)]
    if not directory.is_dir():
        raise VlhError(f"{directory}: no such scenario directory")
    files = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    if not files:
        raise VlhError(f"{directory}: no scenario files (*.yaml, *.yml) in this directory")
    scenarios: list[Scenario] = []
    problems: list[str] = []
    seen: dict[str, Path] = {}
    for f in files:
        sc, errs = _load(f)
        problems += errs
        if sc is None:
            continue
        if sc.name in seen:
            line = _name_line(f)
            problems.append(
                f"{f}:{line}: name: duplicate scenario name '{sc.name}' (also in {seen[sc.name]}); "
                "names must be unique in a suite (they key the history)"
            )
            continue
        seen[sc.name] = f
        scenarios.append(sc)
    if problems:
        raise VlhError(_join(problems))
    return scenarios


def _join(problems: list[str]) -> str:
    if len(problems) == 1:
        return problems[0]
    return f"{len(problems)} problems in scenario files:\n  " + "\n  ".join(problems)


def _load(path: Path) -> tuple[Scenario | None, list[str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [f"{path}: no such scenario file"]
    except (OSError, UnicodeDecodeError) as exc:
        return None, [f"{path}: cannot read this file ({exc})"]
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, [f"{path}:1: the file is empty (a scenario needs at least name: and turns:)"]
        dup = _duplicate_key(node)
        if dup:
            return None, [dup.format(path=path)]
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        what = " ".join(x for x in (exc.context, exc.problem) if x)
        return None, [f"{path}:{line}: YAML syntax: {what} (fix the indentation/quoting on or just before this line)"]
    except yaml.YAMLError as exc:
        return None, [f"{path}: YAML syntax: {exc}"]
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        return None, [f"{path}:{node.start_mark.line + 1}: the file must be a mapping of fields "
                      f"(allowed: {', '.join(Scenario.model_fields)}), not a {type(data).__name__}"]
    try:
        sc = Scenario.model_validate(data, context={"base_dir": path.parent})
    except ValidationError as exc:
        return None, [_describe(path, node, err) for err in exc.errors()]
    except _At as exc:  # pragma: no cover - pydantic wraps these; kept for safety
        return None, [f"{path}:{_line(node, exc.loc)}: {_dotted(exc.loc)}: {exc}"]
    problems = _check_profile(path, node, sc) + _check_voices(path, node, sc)
    if problems:
        return None, problems
    sc._source = path.resolve()
    return sc, []


def _duplicate_key(node: yaml.Node) -> str | None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else None
            if key is not None and key in seen:
                return (f"{{path}}:{k.start_mark.line + 1}: {key}: this key appears twice (first on line {seen[key]}); "
                        "YAML keeps only the last one — remove one of them")
            if key is not None:
                seen[key] = k.start_mark.line + 1
            found = _duplicate_key(v)
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            found = _duplicate_key(item)
            if found:
                return found
    return None


def _describe(path: Path, root: yaml.Node, err: dict) -> str:
    loc = tuple(err.get("loc", ()))
    ctx = err.get("ctx") or {}
    inner = ctx.get("error")
    if isinstance(inner, _At):  # a model validator pointing at a specific field
        loc = loc + tuple(inner.loc)
        return f"{path}:{_line(root, loc)}: {_dotted(loc)}: {inner}"
    kind = err.get("type", "")
    line = _line(root, loc)
    field = _dotted(loc)
    if kind == "extra_forbidden":
        parent_model = _model_at(loc[:-1])
        allowed = list(parent_model.model_fields) if parent_model else []
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        return f"{path}:{line}: {field}: unknown field{hint} (allowed: {', '.join(allowed)})"
    if kind == "missing":
        return f"{path}:{line}: {field}: required field is missing (allowed: {_allowed_text(loc)})"
    if kind == "value_error":
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        allowed = _allowed_text(loc)
        return f"{path}:{line}: {field or '(top level)'}: {msg}" + (f" (allowed: {allowed})" if allowed and loc and loc[-1] == "wav" else "")
    msg = str(err.get("msg", kind))
    if kind == "string_pattern_mismatch":
        msg = "not in the allowed form"
    value = err.get("input")
    shown = f" — got {value!r}" if not isinstance(value, (dict, list)) else ""
    return f"{path}:{line}: {field}: {msg[0].lower() + msg[1:] if msg else kind}{shown} (allowed: {_allowed_text(loc)})"


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (("." if out else "") + str(part))
    return out


def _line(root: yaml.Node, loc: tuple) -> int:
    """1-based line of the deepest YAML node on the path `loc` (the key's line for mapping entries)."""
    node, line = root, root.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                    node, line = v, k.start_mark.line + 1
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _model_at(loc: tuple) -> type[BaseModel] | None:
    model: Any = Scenario
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return None
        model = _inner_model(model.model_fields[part].annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _inner_model(ann: Any) -> Any:
    for arg in (ann, *typing.get_args(ann)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
        for sub in typing.get_args(arg):
            if isinstance(sub, type) and issubclass(sub, BaseModel):
                return sub
    return ann


def _allowed_text(loc: tuple) -> str:
    names = [p for p in loc if not isinstance(p, int)]
    if not names:
        return ""
    parent = _model_at(tuple(p for p in loc[:-1])) if not isinstance(loc[-1], int) else _model_at(loc[:-1])
    last = names[-1]
    if parent is not None and last in parent.model_fields:
        extra = parent.model_fields[last].json_schema_extra or {}
        if isinstance(extra, dict) and "allowed" in extra:
            return str(extra["allowed"])
    return "see docs/scenarios.md"


def _name_line(path: Path) -> int:
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"))
        return _line(node, ("name",)) if node is not None else 1
    except yaml.YAMLError:
        return 1


# ----------------------------------------------------------------------------------------------------------------
# agent profiles: read the reference agent's profile files as data (no import of harness.agent)


def known_profiles(profiles_dir: Path = PROFILES_DIR) -> dict[str, Path]:
    """Profile name -> file, from the reference agent's profile directory (empty when it does not exist yet)."""
    if not profiles_dir.is_dir():
        return {}
    return {p.stem: p for p in sorted(profiles_dir.iterdir()) if p.suffix in PROFILE_SUFFIXES and p.is_file()}


def _check_profile(path: Path, root: yaml.Node, sc: Scenario) -> list[str]:
    profiles = known_profiles()
    if not profiles:  # the reference agent's profiles are not installed: pass the name through unchecked
        return []
    if sc.agent.profile not in profiles:
        line = _line(root, ("agent", "profile")) if isinstance(_child(root, "agent"), yaml.MappingNode) else _line(root, ("agent",))
        close = difflib.get_close_matches(sc.agent.profile, list(profiles), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        return [f"{path}:{line}: agent.profile: unknown reference-agent profile '{sc.agent.profile}'{hint} "
                f"(allowed: {', '.join(profiles)})"]
    # override keys are the agent's business (it checks them when it starts, naming the key): not imported here
    return []


def _check_voices(path: Path, root: yaml.Node, sc: Scenario) -> list[str]:
    """Turns' engines must be known and their voices exist in this machine's engine (checked when a turn names
    one); the reference agent's `tts_engine:` beside `profile:` must name a known engine (or wav-dir:PATH)."""
    from harness.audio.synth import ENGINES

    problems = []
    agent_engine = sc.agent.overrides().get("tts_engine")
    if isinstance(agent_engine, str) and not agent_engine.strip().lower().startswith("wav-dir:") \
            and agent_engine.strip().lower() not in ENGINES:
        problems.append(f"{path}:{_line(root, ('agent', 'tts_engine'))}: agent.tts_engine: unknown TTS engine "
                        f"{agent_engine!r} (allowed: {', '.join(ENGINES)} or wav-dir:PATH)")
    for i, t in enumerate(sc.turns):
        name = (t.engine or "espeak").lower()
        if name not in ENGINES:
            problems.append(f"{path}:{_line(root, ('turns', i, 'engine'))}: turns[{i}].engine: unknown TTS engine "
                            f"{t.engine!r} (allowed: {', '.join(ENGINES)})")
            continue
        if t.voice is None:
            continue
        eng = ENGINES[name]
        try:
            known = eng.voices()
        except Exception:  # noqa: BLE001 - engine not installed here: the runner will say so when it speaks
            continue
        if not known:
            continue
        try:
            eng.resolve(t.voice)
        except VlhError:
            problems.append(f"{path}:{_line(root, ('turns', i, 'voice'))}: turns[{i}].voice: {eng.program} has no "
                            f"voice {t.voice!r} (allowed: {eng.voice_list()})")
    return problems


def _child(node: yaml.Node, key: str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                return v
    return None
