"""Which options `vllm serve` accepts, per vLLM release (profiles/vllm-flags.yaml).

The table is generated from each release's own argument definitions by
`scripts/gen_vllm_flags.py`. vLLM's parser (argparse, allow_abbrev on) accepts an option
when it is one of the release's option strings, the `--no-` form of a BooleanOptionalAction
option, or an unambiguous prefix of a long one; anything else makes it exit with
"unrecognized arguments" (an ambiguous prefix: "ambiguous option").
"""

from __future__ import annotations

import difflib
from typing import Literal, Mapping, Optional

from pydantic import BaseModel, ConfigDict, PrivateAttr

Status = Literal["known", "unknown", "ambiguous"]


class FlagVerdict(BaseModel):
    model_config = ConfigDict(frozen=True)
    option: str  # as written, `=value` removed
    status: Status
    version_known: bool  # the release is in the table (else the union of all releases was used)
    nearest: Optional[str] = None  # the closest accepted option, for an unknown one
    matches: tuple[str, ...] = ()  # the options an ambiguous prefix could mean
    releases: tuple[str, ...] = ()  # releases that do have an unknown option (first and last)


def _parse_ranges(text: str, versions: tuple[str, ...]) -> frozenset[str]:
    index = {v: i for i, v in enumerate(versions)}
    present: set[str] = set()
    for part in text.split(","):
        first, _, last = part.strip().partition("..")
        last = last or first
        if first not in index or last not in index:
            raise ValueError(f"range {part!r} names a release not in `versions`")
        present.update(versions[index[first]: index[last] + 1])
    return frozenset(present)


class FlagTable(BaseModel):
    """Options by release: `options[option] = (kind, releases it exists in)`."""

    model_config = ConfigDict(frozen=True)
    versions: tuple[str, ...]
    options: dict[str, tuple[str, frozenset[str]]]
    _by_version: dict[Optional[str], dict[str, str]] = PrivateAttr(default_factory=dict)

    @classmethod
    def from_data(cls, data: Mapping[str, object]) -> "FlagTable":
        versions = tuple(str(v) for v in data.get("versions") or ())  # type: ignore[union-attr]
        options: dict[str, tuple[str, frozenset[str]]] = {}
        for option, entry in (data.get("options") or {}).items():  # type: ignore[union-attr]
            kind, _, ranges = str(entry).partition(" ")
            options[str(option)] = (kind, _parse_ranges(ranges, versions))
        return cls(versions=versions, options=options)

    def knows(self, version: Optional[str]) -> bool:
        return version is not None and version in self.versions

    def accepted(self, version: Optional[str]) -> dict[str, str]:
        """Every option string the release accepts (`--no-x` forms included) -> kind; for a release
        not in the table, the union over all releases."""
        key = version if self.knows(version) else None
        cached = self._by_version.get(key)
        if cached is None:
            cached = {}
            for option, (kind, releases) in self.options.items():
                if key is None or key in releases:
                    cached[option] = kind
                    if kind == "bool" and option.startswith("--"):
                        cached["--no-" + option[2:]] = kind
            self._by_version[key] = cached
        return cached

    def judge(self, option: str, version: Optional[str]) -> FlagVerdict:
        """How release `version` (None: not known) parses the option string `option`."""
        written = option.split("=", 1)[0]
        name = written
        if written.startswith("--"):
            name = "--" + written[2:].split(".", 1)[0].replace("_", "-")  # FlexibleArgumentParser
        accepted = self.accepted(version)
        version_known = self.knows(version)
        if name in accepted:
            return FlagVerdict(option=written, status="known", version_known=version_known)
        if name.startswith("--") and len(name) > 2:
            prefixed = sorted(o for o in accepted if o.startswith(name))
            if len(prefixed) == 1:
                return FlagVerdict(option=written, status="known", version_known=version_known)
            if len(prefixed) > 1:
                return FlagVerdict(option=written, status="ambiguous", version_known=version_known,
                                   matches=tuple(prefixed[:4]))
        nearest = difflib.get_close_matches(name, list(accepted), n=1, cutoff=0.6)
        releases: tuple[str, ...] = ()
        entry = self.options.get(name)
        if entry is not None and version_known:
            present = [v for v in self.versions if v in entry[1]]
            releases = (present[0], present[-1]) if present else ()
        return FlagVerdict(option=written, status="unknown", version_known=version_known,
                           nearest=nearest[0] if nearest else None, releases=releases)

    def first_version(self) -> str:
        return self.versions[0]

    def last_version(self) -> str:
        return self.versions[-1]
