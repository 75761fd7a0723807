"""Typed configuration: dataclasses filled from YAML in three layers.

defaults (the dataclass) <- a recipe in ``configs/`` (only the differences) <- ``key=value`` overrides.

Unknown keys and values of the wrong type are errors that name the key and list what is valid; numbers must be
finite, and integers fit a 64-bit integer (what torch, numpy and ``range`` take); an integer key takes a whole number
in any decimal form (``1e3``, ``1.0e+3``). A recipe is a path or a packaged recipe's name (a name with a folder in it
or ending in ``.yaml`` / ``.yml`` is a path: :func:`resolve_recipe_path`).
A recipe may name a base recipe with ``_base_: other.yaml`` or ``other`` (resolved relative to the recipe, then among
the packaged recipes; never the working folder); a section or mapping a recipe leaves empty (null: its keys commented
out) changes nothing. An override's value is read as YAML for keys of other types than text, and as written for text
keys (paths, names: ``train.out_dir=010`` is '010', not 8); a number, in an override and in a recipe alike, in
decimal (``train.seed=010`` is 10; ``0x10``, ``0b11`` and ``1:30``, YAML 1.1's 16, 3 and 90, are refused); a section
given whole (``train={out_dir: 010}``) and a quoted value (``train.out_dir="runs/my run"``) are read as in a recipe;
``null``, ``~`` and ``None`` unset a key that may be unset, in an override and in a recipe alike (``none`` too, but
for a key that takes it as a value: ``target.activation=none`` is the linear heads; a key that cannot be unset
refuses them all, a recipe's naming the file to quote it in, once a later layer has not replaced it); an override's
empty value (``train.steps=``: an unset shell variable), whole or in a section given whole (``train={steps: }``), is
refused for a key that is not text and for a file or folder that may be unset (``train.init=``), and unsets another
text key that may be unset (``model.preset=``); quoted or tagged (``"None"``, ``!!str None``), and as an item of a
list or a mapping's key, ``None`` is that text. A text value ``"~"`` (quoted) or starting with ``~/`` is the home
folder or under it (:func:`home`, which ``mme``'s path arguments take too, a bare ``~`` among them). A dataclass with a
``preset`` field fills the fields left unset (None) from the named preset in its ``__post_init__``
(:func:`apply_preset`), so explicit keys win (``model.preset=small model.depth=6`` works) and a config built in
Python gets the same values as one read from YAML. Between layers the later one wins: a layer that names another
preset (``model.preset=base`` over a recipe that sets ``model.embed_dim``) drops the keys of that preset which
earlier layers set (:func:`merge_layer`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import decimal
import functools
import inspect
import logging
import math
import operator
import os
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mme.errors import ConfigError, DataError, UnknownConfigKeys
from mme.utils import cannot_read, fs_name, outside_int64, plain_int, plural, utf8_name

T = TypeVar("T")
log = logging.getLogger(__name__)

RECIPES_DIR = Path(__file__).parent / "configs"


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


class _Override(str):
    """An override's value as written, with ``parsed``: as YAML reads it, but a number in decimal (:func:`_decimal`),
    the raw text where YAML reads none."""

    parsed: Any


class _Block:
    """A collection an override wrote in YAML's block style (``runs/exp: 2``, ``- a.pt``, ``D:``): the collection
    for a key of another type (``train=steps: 5``, ``train.keep_epochs=- 1``; ``target.kind=- pixel``, a text or a
    list), its text as ``written`` for a text key, as a path may read (:func:`_coerce`)."""

    written: str


class _BlockMapping(dict, _Block):
    pass


class _BlockList(list, _Block):
    pass


NULLS = ("null", "Null", "NULL", "~", "None", "none")


MERGE = "tag:yaml.org,2002:merge"


MAX_RECIPE_VALUES = 100_000
"""The most values (a list or mapping, and each of its items) a recipe or an override makes, its YAML aliases
expanded: a recipe holds a few hundred. A few hundred bytes of aliases of aliases (lists of ten aliases of the list
before, or mappings of ten merges ``<<`` of the mapping before, 8 levels deep) make 10**8, which each walk of the
config, and the refusal that quotes a value, took minutes and hundreds of MB for."""


def _expanded_values(data: Any, counted: dict[int, int]) -> int:
    """How many values ``data`` holds with every YAML alias in it expanded (a list or mapping reached again counted
    again), each list or mapping counted once (``counted``: by id; one that holds itself counts itself once)."""
    if not isinstance(data, (dict, list)):
        return 1
    if id(data) not in counted:
        counted[id(data)] = 1  # (a list or mapping that holds itself, an alias inside its own anchor)
        counted[id(data)] = 1 + sum(_expanded_values(v, counted) for v in
                                    (data.values() if isinstance(data, dict) else data))
    return counted[id(data)]


class _RecipeLoader(yaml.SafeLoader):
    """YAML 1.1 reads ``010`` as 8, ``1:30`` as 90, ``2024_01`` as 20241, ``on`` as true and ``2024-01-05`` as a date:
    in a recipe or an override, such a value keeps the text it was written as (an :class:`_Override`), which a
    text key takes and any other key reads as YAML does, but for a number, read in decimal (:func:`_decimal`). A key
    given twice in one mapping is a ConfigError (YAML keeps the later one: a second ``train:`` section dropped the
    first), and so is a null key (``~: 3``), a second merge key ``<<`` and a ``%YAML`` directive of another version
    than 1.1 (:meth:`flatten_mapping`, :meth:`process_directives`)."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._flattened: set[yaml.MappingNode] = set()
        self._version: yaml.DirectiveToken | None = None

    def compose_scalar_node(self, anchor: str | None) -> yaml.ScalarNode:
        """The node, marked ``tagged`` where its tag was written (``!!str None``: the text, :func:`_text`)."""
        tag = self.peek_event().tag
        node = super().compose_scalar_node(anchor)
        node.tagged = tag not in (None, "")
        return node

    def construct_document(self, node: yaml.Node) -> Any:
        """The document's value, refused where it holds more than :data:`MAX_RECIPE_VALUES` values, its aliases
        expanded (:func:`_expanded_values`)."""
        data = super().construct_document(node)
        if (values := _expanded_values(data, {})) > MAX_RECIPE_VALUES:
            raise ConfigError(f"holds {values} values (its YAML aliases expanded), more than the {MAX_RECIPE_VALUES} "
                              "mme reads: give fewer")
        return data

    def scan_directive(self) -> yaml.DirectiveToken:
        token = super().scan_directive()
        if token.name == "YAML":
            self._version = token
        return token

    def process_directives(self):
        """Refuse ``%YAML 1.2`` (any version but 1.1) before a document: PyYAML reads every 1.x as 1.1, whose
        ``yes`` and ``on`` 1.2 reads otherwise. (Not before a document, ``%YAML 1.2`` is an
        override's text, as YAML cannot read it.)"""
        value = super().process_directives()
        if self.yaml_version not in (None, (1, 1)) and self.check_token(yaml.DocumentStartToken):
            version, line = ".".join(map(str, self.yaml_version)), self._version.start_mark.line + 1
            raise ConfigError(f"%YAML {version} (line {line}): mme reads YAML 1.1, where yes/no/on/off are booleans "
                              "(1.2: text): remove the directive, writing such values as 1.1 reads them")
        return value

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        """Check ``node``'s keys (once, before any mapping is merged into it), then merge YAML 1.1's merge key:
        ``<<: *a`` or ``<<: [*a, *b]`` puts the keys of those mappings under the node's own, the node's own key
        winning, then the mapping listed first (PyYAML 6.0.4 let a later one win where a key was longer than one
        character). A second ``<<`` in one mapping is a ConfigError: which would win is unsaid (YAML keys are
        unique); so are a key given twice and a null key."""
        if node in self._flattened:
            return
        self._flattened.add(node)
        seen: dict[str, yaml.Mark] = {}
        merges = [(key_node, value_node) for key_node, value_node in node.value if key_node.tag == MERGE]
        if len(merges) > 1:
            raise ConfigError(f"the merge key '<<' is given twice in one mapping (lines "
                              f"{' and '.join(str(k.start_mark.line + 1) for k, _ in merges)}), and which would win "
                              f"is unsaid: give one, with a list (<<: [*a, *b]: the first listed wins)")
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == MERGE:
                continue
            if key_node.tag == "tag:yaml.org,2002:null":
                raise ConfigError(f"key {key_node.value or '(none)'!r} (line {key_node.start_mark.line + 1}) is "
                                  "YAML's null, not a name: give the key's name")
            first, again = seen.setdefault(key_node.value, key_node.start_mark), key_node.start_mark
            if first is not again:
                where = (f"line {first.line + 1}, columns {first.column + 1} and {again.column + 1}"
                         if first.line == again.line else f"lines {first.line + 1} and {again.line + 1}")
                raise ConfigError(f"key {key_node.value!r} is given twice ({where}); YAML would keep only the "
                                  "later one: give it once")
            if key_node.tag == "tag:yaml.org,2002:value":  # ('=': a key as PyYAML reads it)
                key_node.tag = "tag:yaml.org,2002:str"
        merged = []
        for _, value_node in merges:
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for source in reversed(sources):  # (a later pair wins: the first listed last)
                if not isinstance(source, yaml.MappingNode):
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark, "expected a mapping or list of mappings "
                        f"for merging, but found {source.id}", source.start_mark)
                self.flatten_mapping(source)
                merged += [pair for pair in source.value if pair[0].tag != MERGE]  # (a node merging itself: unmerged)
        if merges:  # (a key merged again, ten times from each of ten merges nested, kept once: the last, which wins)
            pairs = merged + [pair for pair in node.value if pair[0].tag != MERGE]
            node.value = list({_key_of(key): (key, value) for key, value in pairs}.values())


def _key_of(node: yaml.Node) -> tuple | int:
    """What a mapping's key node is as a key, without constructing it: a scalar's tag and text (two alike make one
    key), another node itself."""
    return (node.tag, node.value) if isinstance(node, yaml.ScalarNode) else id(node)


_READ_AS = {"int": "construct_yaml_int", "float": "construct_yaml_float", "bool": "construct_yaml_bool",
            "timestamp": "construct_yaml_timestamp"}


def _as_written(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> _Override:
    value = _Override(node.value)
    kind = node.tag.rpartition(":")[2]
    value.parsed = _decimal(node.value) if kind in ("int", "float") else getattr(loader, _READ_AS[kind])(node)
    return value


def _decimal(text: str) -> int | float | str:
    """A number YAML 1.1 reads as one, read in decimal as Python reads it (``010`` and ``0010`` 10, not octal 8; an
    int where it is one), or its text where that is no decimal number (``0x10``, ``0b11``, ``1:30``, ``.inf``): a
    number key refuses it, naming it as written, instead of taking a number other than the one it looks like."""
    for number in (int, float):
        with contextlib.suppress(ValueError):
            return number(text)
    return text


for _kind in _READ_AS:
    _RecipeLoader.add_constructor(f"tag:yaml.org,2002:{_kind}", _as_written)


class _NullText(_Override):
    """An unquoted, untagged ``None`` or ``none`` (:func:`_text`), as a whole value an override's unset; ``recipe``:
    the recipe file that holds it (:func:`load_recipe`), None in an override."""

    recipe: Path | None = None


def _text(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> str:
    """A text; unquoted and untagged (not ``!!str None``), one of :data:`NULLS` that YAML reads as text (``None``,
    ``none``) is a :class:`_NullText`, which as a key's whole value unsets it as an override's does (:func:`_unset`),
    in a recipe and in an override's collection alike; an item of a list or a mapping's key stays text
    (:func:`_item`)."""
    text = loader.construct_yaml_str(node)
    if node.style is None and not getattr(node, "tagged", False) and text in NULLS:
        text = _NullText(text)
        text.parsed = str(text)
    return text


def _item(value: Any) -> Any:
    """An item of a list or a key of a mapping as :func:`_coerce` reads it: an unquoted ``None`` there is the text
    (only a key's whole value is unset by it: ``target.kind: [hog, None]`` is an unknown target 'None')."""
    return str(value) if isinstance(value, _NullText) else value


_RecipeLoader.add_constructor("tag:yaml.org,2002:str", _text)


class _OverrideLoader(_RecipeLoader):
    """An override's YAML, read as a recipe's but for an empty value in a collection (``train={steps: $STEPS}``,
    ``train=steps: $STEPS``, STEPS unset), which is the empty text, as an override's whole value is
    (:func:`_field_value` refuses it where a key takes no empty text), not null: ``null`` unsets a key."""


def _empty_as_written(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    if node.value:  # (null, ~)
        return loader.construct_yaml_null(node)
    value = _Override("")
    value.parsed = ""
    return value


_OverrideLoader.add_constructor("tag:yaml.org,2002:null", _empty_as_written)


class _RecipeDumper(yaml.SafeDumper):
    """Writes a config as a recipe that :class:`_RecipeLoader` reads back: a text that it would read as unset
    (``None``, ``none``) quoted."""


def _quoted_if_unset(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="'" if text in NULLS else None)


_RecipeDumper.add_representer(str, _quoted_if_unset)


def dump_recipe(data: dict[str, Any]) -> str:
    """``data`` (a config as a dict) as a recipe's YAML, keys in their order, which :func:`load_recipe` reads back
    as the same values."""
    return yaml.dump(data, Dumper=_RecipeDumper, sort_keys=False)


def _unset(value: Any) -> bool:
    """Whether a value means 'unset': None, or an override written as one of :data:`NULLS` or nothing."""
    return value is None or (isinstance(value, _Override) and value.strip() in (*NULLS, ""))


class _OutOfRange(ConfigError):
    """A value of a key's type that the type cannot hold (an integer past int64): refused as that, not as a value
    that matches none of a union's types."""


class _CannotBeUnset(ConfigError):
    """A text key given one of :data:`NULLS`, which it cannot be unset by; from a recipe (a :class:`_NullText` with
    its ``recipe``), refused once the layers are merged, so that a later layer may replace it
    (:func:`_checked_layer`)."""


NONE = "none"
"""A text some keys take as a value (``target.activation``: linear heads), which a recipe or an override would read
as null: the section's ``NONE_IS_A_VALUE`` names them."""


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` to the annotated type ``tp`` or raise ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if isinstance(value, _Override):
        union = origin in (typing.Union, types.UnionType)
        if union and type(None) in args and _unset(value):
            return None
        if tp is str and value.strip() in NULLS:
            text, recipe = value.strip(), getattr(value, "recipe", None)
            if recipe is not None:  # (an old run's config.yaml held the text so: out_dir: None)
                raise _CannotBeUnset(
                    f"recipe {recipe}: config key '{key}': {text}, unquoted, unsets a key, which this one cannot be: "
                    f"for the text, quote it in {recipe} ({key.rpartition('.')[2]}: \"{text}\"), or give "
                    f"'{key}=\"{text}\"'")
            raise _CannotBeUnset(f"config key '{key}': {text!r} would be taken as that text; this key cannot "
                                 f"be unset (a string: '{key}=' gives the empty one)")
        written = tp is int and isinstance(value.parsed, float)  # (read from its text: 2**53 + 1.0 not rounded)
        if isinstance(value.parsed, (list, dict)) or (tp is not str and not union and not written):
            value = value.parsed  # (a union tries its types)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        members = [arg for arg in args if arg is not type(None)]
        if isinstance(value, _Block):  # the collection for any member that takes it; the text only failing that
            members.sort(key=lambda arg: arg is str)
        for arg in members:
            try:
                return _coerce(value, arg, key)
            except _OutOfRange:
                raise
            except ConfigError:
                if len(members) == 1:  # (a ``T | None`` key's value refused in the words of a T key)
                    raise
        raise ConfigError(f"config key '{key}': {value!r} matches none of {[_type_name(a) for a in args]}")
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v != ""]
        elif isinstance(value, (int, float)):  # a lone number, as '1.0,' is
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
        item_tp = args[0] if args else Any
        items = [_coerce(_item(v), item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping, got {value!r}")
        if len(args) == 2:
            return {_coerce(_item(k), args[0], key): _coerce(v, args[1], f"{key}.{k}") for k, v in value.items()}
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping of {_type_name(tp)} fields, got {value!r}")
        return from_dict(tp, value, prefix=key + ".")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ConfigError(f"config key '{key}': expected true/false, got {value!r}")
    if tp is int:
        return _integer(value, key, read=True)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"config key '{key}': expected a number, got {value!r}")
        number = None
        if isinstance(value, (int, float)):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None and math.isfinite(number):
            return number
        raise ConfigError(f"config key '{key}': expected a finite number, got {value!r}")
    if tp is str:
        if isinstance(value, _Block):
            return home(value.written.strip(), f"config key '{key}'")
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            text = str(value).strip() if isinstance(value, _Override) else str(value)
            return home(text, f"config key '{key}'")
        raise ConfigError(f"config key '{key}': expected a string, got {value!r}")
    return value


def _whole_number(value: Any) -> decimal.Decimal | None:
    """``value`` exactly, where it is a whole number: an int (not a bool), a float, or a decimal text, in any form
    (``1000``, ``1e3``, ``1.0e+3``, ``1000.0``); None for anything else (``1.5e0``, ``nan``, ``ten``, and a text that
    is no number to Python for its underscores, ``_10`` or ``1_e3``, which Decimal takes wherever they are). A
    Decimal, so that its range is checked before it is made an int (``1e999999999`` as an int is a billion digits)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        if isinstance(value, str):
            value = value.strip()
            float(value)  # (Python's rule of underscores: between digits only)
        number = decimal.Decimal(value)
    except (ValueError, decimal.InvalidOperation):
        return None
    return number if number.is_finite() and number == number.to_integral_value() else None


def home(text: str, named: str = "") -> str:
    """``text`` with ``~`` or a leading ``~/`` the home folder, as the shell expands them: a text key's value (a
    quoted ``"~"``; a bare ``~`` is YAML's null), or a path argument of ``mme`` (a shell leaves ``--out=~`` and
    ``--out=~/x`` as written). ``~name`` stays as written: it is another user's home folder only where a user of that
    name exists (``~backup`` is ``/var/backups`` on Debian). A process without a home folder (HOME unset, its user
    in no passwd entry: a container run with ``--user UID``; or HOME not an absolute path, ``HOME=``) is a ConfigError
    naming ``named`` (the key) and the value: expanded as Python does, ``~/runs/x`` was a folder named ``~`` in the
    working folder (which a later ``rm -rf ~`` took for the home folder), or ``runs/x`` under ``/``."""
    if text != "~" and not text.startswith("~/"):
        return text
    expanded, given = os.path.expanduser(text), os.environ.get("HOME")
    if given is not None and not os.path.isabs(given):
        why = f"HOME is {given!r}, not an absolute path"
    elif expanded.startswith("~"):
        why = "HOME is unset, and this user has no passwd entry"
    else:
        return expanded
    raise ConfigError(f"{named + ': ' if named else ''}{text!r}: ~ names the home folder, which this process has not "
                      f"({why}); set HOME, or give the path in full")


def field_types(cls: type) -> dict[str, Any]:
    """``{field: type}`` of dataclass ``cls``: each field's annotation (text, under ``from __future__ import
    annotations``) evaluated once where its class declares it, as :func:`inspect.get_annotations` with ``eval_str``
    evaluates it (not :func:`typing.get_type_hints`, which also resolves the strings nested in a type, turns a bare
    ``None`` into ``NoneType`` and strips ``Annotated``, and which on Python 3.10 refuses a class that declares an
    ``InitVar``, bpo-44799: ``ModelConfig``, ``DataConfig``). The ``InitVar`` values, which are no fields, are left
    out."""
    fields = {f.name for f in dataclasses.fields(cls)}
    out = {}
    for base in reversed(cls.__mro__):
        out.update((name, tp) for name, tp in inspect.get_annotations(base, eval_str=True).items() if name in fields)
    return out


def path_keys(cls: type, prefix: str = "") -> dict[str, str]:
    """The dotted keys of config dataclass ``cls`` that name a file or folder, each with what an empty value names
    (each section's ``PATHS``)."""
    hints = field_types(cls)
    keys = {prefix + name: empty for name, empty in getattr(cls, "PATHS", {}).items()}
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            keys |= path_keys(hints[f.name], f"{prefix}{f.name}.")
    return keys


def with_paths_as(names: Callable[[str], str], cls: type, config: dict[str, Any]) -> dict[str, Any]:
    """``config`` (of config dataclass ``cls``, as a dict) with the text of each of its path keys (:func:`path_keys`)
    mapped by ``names``: :func:`mme.utils.utf8_name` for a file mme writes, :func:`mme.utils.fs_name` for one read."""
    out = {section: dict(fields) if isinstance(fields, dict) else fields for section, fields in config.items()}
    for key in path_keys(cls):
        section, name = key.split(".")
        if isinstance(out.get(section, {}).get(name), str):
            out[section][name] = names(out[section][name])
    return out


def recorded(cfg: Any) -> dict[str, Any]:
    """Config dataclass ``cfg`` as a dict, its paths as UTF-8 text (:func:`with_paths_as`), as a run records it in
    its config.yaml and checkpoints, which are read whatever the locale."""
    return with_paths_as(utf8_name, type(cfg), dataclasses.asdict(cfg))


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "", **init_vars: Any) -> T:
    """Build dataclass ``cls`` from a (nested) mapping; unknown keys raise ConfigError listing valid ones, and each
    value is read as :func:`_field_value` reads it. ``init_vars``: its ``InitVar`` values. The sections of a class
    that checks their clips itself (its ``CHECKS_SECTION_CLIPS``: a run config, whose ``train.init`` may replace the
    patch and tubelet) are built with ``checks_clip=False``, their check left to it."""
    data = dict(data or {})
    hints = field_types(cls)
    _refuse_unknown(cls, data, prefix)
    if getattr(cls, "CHECKS_SECTION_CLIPS", False):
        for name, value in data.items():
            if isinstance(value, dict) and hasattr(hints[name], "check_clip"):
                data[name] = from_dict(hints[name], value, f"{prefix}{name}.", checks_clip=False)
    kwargs = {name: _field_value(cls, name, value, hints[name], prefix) for name, value in data.items()}
    try:
        return cls(**kwargs, **init_vars)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config '{prefix.rstrip('.') or cls.__name__}': {e}") from e


def _refuse_unknown(cls: type, data: dict[str, Any], prefix: str) -> None:
    """An UnknownConfigKeys listing the keys of ``data`` that dataclass ``cls`` has no field for, and its valid ones."""
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - fields)
    if unknown:
        other = [why for k, why in getattr(cls, "OTHER_KINDS", {}).items() if k in unknown]
        raise UnknownConfigKeys(
            f"unknown config {plural(len(unknown), 'key')} {[prefix + k for k in unknown]}; valid keys under "
            f"'{prefix.rstrip('.') or '<top>'}': {sorted(fields)}" + "".join(f" ({why})" for why in other)
        )


def _checked_layer(cls: type, data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``data``, one layer of a config of dataclass ``cls`` (a recipe without its base), with its unknown keys and
    values of the wrong type refused as :func:`from_dict` refuses them, without building it (what the layers set
    together is checked when they are merged), and each section or mapping left empty (null: its keys commented out,
    ``train:``) as ``{}``: nothing changed there, over a base as over the defaults, with or without overrides. A path
    key's text (UTF-8, as YAML is) is held as the file system's name for it (:func:`mme.utils.fs_name`), as an
    override's is, whatever the locale."""
    hints = field_types(cls)
    _refuse_unknown(cls, data, prefix)
    out = {}
    for name, value in data.items():
        tp = hints[name]
        if (dataclasses.is_dataclass(tp) or dict in (tp, typing.get_origin(tp))) and _unset(value):
            value = {}
        if name in getattr(cls, "PATHS", {}) and type(value) is str:  # (not an unset one: a _NullText)
            value = fs_name(value)
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            value = _checked_layer(tp, value, f"{prefix}{name}.")
        else:
            try:
                _field_value(cls, name, value, tp, prefix)
            except _CannotBeUnset:
                if getattr(value, "recipe", None) is None:
                    raise  # (a recipe's: refused when the layers are merged, unless a later one replaces it)
        out[name] = value
    return out


def _field_value(cls: type, name: str, value: Any, tp: Any, prefix: str) -> Any:
    """``value`` as key ``name`` (of type ``tp``) of config dataclass ``cls`` takes it (:func:`_coerce`, the text
    :data:`NONE` for a key of its ``NONE_IS_A_VALUE``); in a path key (its ``PATHS``) a NUL byte is refused, on which
    os calls raise a bare ValueError where they do not skip it."""
    key = prefix + name
    if name in getattr(cls, "NONE_IS_A_VALUE", ()) and isinstance(value, _Override) and value.strip() == NONE:
        return NONE  # (none, unquoted, not unset)
    union = typing.get_origin(tp) in (typing.Union, types.UnionType)
    types_of = typing.get_args(tp) if union else (tp,)
    if isinstance(value, _Override) and not value.strip():  # (train.steps=$STEPS, STEPS unset)
        unset = ", or null to unset it" if type(None) in types_of else ""
        if str not in types_of:
            raise ConfigError(f"config key '{key}': empty (an unset shell variable?), which only a text key takes: "
                              f"give its value{_empty_collection(cls, name, types_of)}{unset}")
        if name in getattr(cls, "PATHS", {}) and unset:  # (train.init=$INIT: not trained from scratch unsaid)
            raise ConfigError(f"config key '{key}': empty (an unset shell variable?), which names no file or folder: "
                              f"give its path{unset}")
    out = _coerce(value, tp, key)
    if name in getattr(cls, "PATHS", {}) and isinstance(out, str) and "\0" in out:
        raise ConfigError(f"config key '{key}': {out!r} holds a NUL byte, which no path can hold")
    return out


def _empty_collection(cls: type, name: str, types_of: tuple[Any, ...]) -> str:
    """How key ``name`` of config dataclass ``cls`` (of the types ``types_of``) is given an empty list or mapping,
    where it takes one (``train.keep_epochs``: ``[]``; ``target.loss_weights``: ``{}``; not ``optim.betas``, two
    numbers), said beside the refusal of an empty value: ``cls`` built with it, its other keys at their defaults,
    takes it or refuses it as any config does."""
    for tp in types_of:
        origin = typing.get_origin(tp) or tp
        if origin in (list, tuple, dict):
            empty, written = ({}, "{}") if origin is dict else ((), "[]")
            try:
                cls(**{name: empty})
            except (ConfigError, TypeError, ValueError):
                return ""
            return f" ({written} for none)"
    return ""


@functools.cache
def _integer_fields(cls: type) -> tuple[tuple[str, Any], ...]:
    """The fields of dataclass ``cls`` annotated ``int``, ``int | None`` or ``tuple[int, ...]``, each with its
    annotation."""
    hints = field_types(cls)
    return tuple((f.name, hints[f.name]) for f in dataclasses.fields(cls)
                 if hints[f.name] in (int, int | None, tuple[int, ...]))


def _integer(value: Any, key: str, read: bool) -> int:
    """``value`` as config key ``key``'s integer: an int (a numpy one too; not a bool, :func:`~mme.utils.plain_int`),
    and where ``read`` (a recipe's or an override's value, :func:`_coerce`) a whole number in any decimal form
    (:func:`_whole_number`: ``2.0``, ``1e3``); anything else, or one past int64 (:class:`_OutOfRange`), refused in
    one line naming the key, in the same words however the value was given (:func:`check_integers`: a config built
    in Python)."""
    whole = plain_int(value)
    if whole is None and read:
        whole = _whole_number(value)
    if whole is None:  # (an override's float kept as its text to be read exactly: said as the number it is)
        said = value.parsed if isinstance(value, _Override) else value
        raise ConfigError(f"config key '{key}': expected an integer, got {said!r}")
    if why := outside_int64(whole, str(value).strip()):
        raise _OutOfRange(f"config key '{key}': {why}")
    return int(whole)


def check_integers(cfg: Any, section: str) -> None:
    """Make each integer field of config dataclass ``cfg`` (annotated ``int``, or ``int | None`` and set) a plain int,
    and each item of a ``tuple[int, ...]`` one, anything else refused in one line naming ``<section>.<field>`` (its
    item ``[i]``; :func:`_integer`): a bool, a float, a text. Recipes and overrides are read by their annotations
    (:func:`_coerce`); a config built in Python is not, and ``ModelConfig(img_size=32.0)`` was taken (its token
    count 8.0, the model's build a TypeError), ``DataConfig(stride="4")`` failed at a comparison naming no key,
    ``TrainConfig(keep_epochs=(1.5,))`` kept no epoch."""
    for name, annotation in _integer_fields(type(cfg)):
        value, key = getattr(cfg, name), f"{section}.{name}"
        if annotation == tuple[int, ...]:
            if not isinstance(value, (tuple, list)):
                raise ConfigError(f"config key '{key}': expected a list of integers, got {value!r}")
            setattr(cfg, name, tuple(_integer(v, f"{key}[{i}]", read=False) for i, v in enumerate(value)))
        elif value is not None or annotation is int:
            setattr(cfg, name, _integer(value, key, read=False))


def apply_preset(cfg: Any, section: str, presets: dict[str, dict], fallback: dict[str, Any] | None = None) -> None:
    """Fill the fields of ``cfg`` that are None from its preset ``cfg.preset`` (when set), then from ``fallback``;
    an unknown preset is a ConfigError naming ``<section>.preset`` and the choices."""
    if cfg.preset is not None and cfg.preset not in presets:
        raise ConfigError(f"config key '{section}.preset': unknown preset {cfg.preset!r}; available: "
                          f"{sorted(presets)}")
    for name, value in {**(fallback or {}), **presets.get(cfg.preset, {})}.items():
        if getattr(cfg, name) is None:
            setattr(cfg, name, value)


def same_key_in(key: str, keys: Iterable[str]) -> str | None:
    """The first of the dotted ``keys`` that sets the same value as ``key`` (it is ``key``, or a section or mapping
    holding it, or one ``key`` holds), None where none does."""
    return next((k for k in keys if k == key or k.startswith(key + ".") or key.startswith(k + ".")), None)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` -> nested mapping of the values (:class:`_Override`: as written, and read as YAML, a number
    in decimal;
    a mapping value, ``section={...}``, and a quoted text, ``'"runs/my run"'``, are kept as a recipe reads them; a
    value YAML reads as a block mapping or list, ``runs/exp: 2`` or ``- x``, is that collection, which a text key
    takes as written: :class:`_Block`).
    A key given twice (``train.steps=5 train.steps=7``, or ``train={steps: 5}`` beside it) is a ConfigError, as in a
    recipe: the later one would win unsaid (:func:`layered` puts one list of overrides over another)."""
    out: dict[str, Any] = {}
    for key, value, _ in _parsed(items):
        node = out
        parts = key.split(".")
        for part in parts[:-1]:  # (a value given at a prefix of this key was refused as the same key)
            node = node.setdefault(part, {})
        old = node.get(parts[-1])
        node[parts[-1]] = merge(old, value) if isinstance(value, dict) and isinstance(old, dict) else value
    return out


def override_keys(items: list[str]) -> list[set[str]]:
    """The dotted keys each of the ``key=value`` overrides sets (each key of a mapping value), refused as
    :func:`parse_overrides` refuses them."""
    return [keys for _, _, keys in _parsed(items)]


def _parsed(items: list[str]) -> Iterator[tuple[str, Any, set[str]]]:
    """Each override's ``(key, value, the dotted keys it sets)``; a key given twice is a ConfigError."""
    given: dict[str, str] = {}  # each dotted key set so far -> the override that set it
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        loader = None
        try:
            loader = _OverrideLoader(raw)  # refuses characters YAML cannot hold (a path's undecodable bytes)
            node = loader.get_single_node()
            parsed = "" if node is None else loader.construct_document(node)
            if isinstance(node, yaml.CollectionNode) and not node.flow_style:  # (collections: [...], {...})
                parsed = (_BlockMapping if isinstance(parsed, dict) else _BlockList)(parsed)
                parsed.written = raw
        except yaml.YAMLError:
            # '%HOME%', '*best.pt', a path's undecodable bytes: text, which only a text key takes (quoted: the text
            # inside the quotes, as YAML reads a quoted scalar)
            node, parsed = None, raw
            if len(raw) > 1 and raw[0] == raw[-1] and raw[0] in "'\"":
                node, parsed = yaml.ScalarNode("tag:yaml.org,2002:str", raw, style=raw[0]), raw[1:-1]
        except ConfigError as e:
            raise ConfigError(f"override {item!r}: {e}") from e
        finally:
            if loader is not None:
                loader.dispose()
        if isinstance(parsed, dict) or (isinstance(node, yaml.ScalarNode) and node.style in ("'", '"')):
            value = parsed
        else:
            value = _Override(raw)
            value.parsed = getattr(parsed, "parsed", parsed)
        key = key.strip()
        keys = set(flatten(value, f"{key}.") if isinstance(value, dict) else {key: value})
        for k in keys:
            again = same_key_in(k, given)
            if again is not None:
                raise ConfigError(f"override {item!r}: key '{k}' is given twice (also by {given[again]!r}), the later "
                                  "would win unsaid: give it once")
            given[k] = item
        yield key, value, keys


def flatten(d: dict, prefix: str = "") -> dict:
    """A nested mapping as ``{"section.key": value}``."""
    out = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def given_keys(overrides: list[str]) -> set[str]:
    """The dotted keys a command line's ``key=value`` overrides set (each key of a mapping value)."""
    return set().union(*override_keys(overrides))


def layered(*layers: list[str]) -> list[str]:
    """Lists of ``key=value`` overrides, each a layer over those before it: an earlier override of a key a later
    layer gives is dropped (a command's own settings under the user's, which :func:`parse_overrides` would refuse as
    a key given twice)."""
    kept: list[tuple[str, set[str]]] = []  # each override with the keys it sets, each layer parsed once
    for layer in layers:
        keys = override_keys(layer)
        given = set().union(*keys)
        kept = [(o, sets) for o, sets in kept if all(same_key_in(k, given) is None for k in sets)]
        kept += zip(layer, keys)
    return [o for o, _ in kept]


def differences(a: dict, b: dict) -> list[str]:
    """The dotted keys whose values differ between two nested mappings (a key only one has included), sorted."""
    fa, fb = flatten(a), flatten(b)
    return sorted(k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k))


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``update`` wins."""
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def merge_layer(cls: type, base: dict[str, Any], update: dict[str, Any], prefix: str = "",
                level: int = logging.INFO) -> dict[str, Any]:
    """``merge(base, update)`` for the config dataclass ``cls``, where a section whose ``preset`` the update changes
    loses the keys of its presets (``cls.PRESETS``) that ``base`` set and the update does not: a later layer's
    preset wins over an earlier layer's explicit values, as any later key does (each drop is logged at ``level``:
    a recipe's own layers at debug, overrides at info; said once within :func:`warnings_once`)."""
    out = merge(base, update)
    presets = getattr(cls, "PRESETS", None)
    def preset(layer):
        return None if _unset(layer.get("preset")) else str(layer["preset"])

    if presets and "preset" in update and preset(update) != preset(base):
        governed = sorted(set().union(*presets.values()))
        dropped = {k: base[k] for k in governed if k in base and k not in update}
        for k in dropped:
            del out[k]
        if dropped:
            _say(level, f"config: {prefix}preset={update['preset']} replaces "
                        f"{', '.join(f'{prefix}{k}={v}' for k, v in dropped.items())} set before it")
    hints = field_types(cls) if dataclasses.is_dataclass(cls) else {}
    for name, value in update.items():
        tp = hints.get(name)
        if dataclasses.is_dataclass(tp) and isinstance(value, dict) and isinstance(base.get(name), dict):
            out[name] = merge_layer(tp, base[name], value, f"{prefix}{name}.", level)
    return out


RECIPE_SUFFIXES = (".yaml", ".yml")


def _recipe_file(name: str) -> str:
    """``name`` as a recipe's file name: as given where it ends in ``.yaml`` or ``.yml``, else with ``.yaml``."""
    return name if name.endswith(RECIPE_SUFFIXES) else f"{name}.yaml"


def _is_recipe(path: Path) -> bool:
    """Whether ``path`` is a file; a folder on the way that cannot be searched is a ConfigError naming it."""
    try:
        return path.is_file()
    except OSError as e:
        raise ConfigError(f"recipe {cannot_read(path, e)}") from e


def packaged_recipe(name: str) -> Path:
    """The packaged recipe ``name`` as its file: what mme's own jobs (the demo, the benches) run, whatever recipe
    files the working folder holds (a bare name there is refused where it is both: :func:`resolve_recipe_path`)."""
    return RECIPES_DIR / _recipe_file(name)


def _packaged_of_name(path: str, base_of: Path | None = None) -> str:
    """For a recipe ``path`` not found: how the packaged recipe of its file's name is given, where there is one
    (``./tiny_cpu_mme.yaml``: ``tiny_cpu_mme``, a bare name, where that name gives it there; else its path), else
    nothing."""
    name = Path(path).name
    stem = name[:-len(suffix)] if (suffix := next((s for s in RECIPE_SUFFIXES if name.endswith(s)), "")) else name
    if not stem or not _is_recipe(packaged := packaged_recipe(stem)):
        return ""
    try:  # (a bare name is a file of the working folder, or beside the recipe, before the packaged one)
        plain = resolve_recipe_path(stem, base_of) == packaged
    except ConfigError:  # (both, refused)
        plain = False
    return f"; the packaged recipe of that name is given as {stem if plain else packaged}"


def resolve_recipe_path(name: str | Path, base_of: Path | None = None) -> Path:
    """A recipe given as a path, or the name of a packaged recipe (with or without ``.yaml``). A Path, or a name with
    a folder in it or ending in ``.yaml`` / ``.yml``, is a path, never a packaged recipe (``./tiny_cpu_mme`` is
    ``./tiny_cpu_mme`` or ``./tiny_cpu_mme.yaml``); a bare name that is both a file in the working folder (as
    written or with ``.yaml``) and a packaged recipe is refused naming both, as either may be meant. A base recipe
    (``base_of``: the recipe naming it) is looked for beside that recipe (with or without ``.yaml`` too), then, where
    it names no folder, among the packaged ones; never in the working folder: a user's edited copy of a packaged
    recipe there would become every recipe's base. The recipe itself comes after the packaged ones: ``_base_:
    tiny_cpu_mme`` in a copy named so is the packaged one."""
    text, packaged = str(name), packaged_recipe(str(name))
    if not text.strip():  # (an unset shell variable: --config "$RECIPE")
        raise ConfigError(f"recipe {text!r}: empty, which names no recipe; give a YAML path or a packaged recipe's "
                          f"name ({_packaged_names()})")
    if base_of is None:
        local = next((c for c in (Path(n) for n in dict.fromkeys((text, _recipe_file(text)))) if _is_recipe(c)),
                     None)
        if isinstance(name, Path) or os.sep in text or "/" in text or text.endswith(RECIPE_SUFFIXES):
            if local is None:
                raise ConfigError(f"recipe {text!r} not found (no such file{_packaged_of_name(text)})")
            return local
        if local is not None and _is_recipe(packaged):
            raise ConfigError(f"recipe {text!r} is both {local} in the working folder and the packaged {packaged}: "
                              f"give ./{local} or the packaged path")
        if local is not None:
            return local
        candidates = [packaged]
    else:
        beside = [base_of.parent / n for n in dict.fromkeys((text, _recipe_file(text)))]
        if os.sep in text or "/" in text:  # a path (./x.yaml, ../x, sub/x): beside, never a packaged recipe
            if (found := next((c for c in beside if _is_recipe(c)), None)) is None:
                raise ConfigError(f"recipe {text!r} not found (no such file from {base_of.parent}"
                                  f"{_packaged_of_name(text, base_of)})")
            return found
        itself = [c for c in beside if _is_recipe(c) and c.samefile(base_of)]
        candidates = [*(c for c in beside if c not in itself), packaged, *itself]
    for c in candidates:
        if _is_recipe(c):
            return c
    raise ConfigError(f"recipe {text!r} not found (not a file, not a packaged recipe: {_packaged_names()})")


def _packaged_names() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def load_recipe(name: str | Path, cls: type) -> dict[str, Any]:
    """Read a YAML recipe, following ``_base_`` chains: each recipe a layer over its base (:func:`merge_layer` for
    the config dataclass ``cls``; :func:`_recipe_layers`)."""
    return _merged(cls, _recipe_layers(name, cls))


def _merged(cls: type, layers: list[tuple[Path, dict[str, Any]]]) -> dict[str, Any]:
    """A recipe's ``layers`` (:func:`_recipe_layers`) merged, each over the ones before it."""
    return functools.reduce(lambda data, layer: merge_layer(cls, data, layer[1], level=logging.DEBUG), layers, {})


def _recipe_layers(name: str | Path, cls: type, _chain: tuple[Path, ...] = ()) -> list[tuple[Path, dict[str, Any]]]:
    """A YAML recipe and the recipes of its ``_base_`` chain, each as its file and its layer, the chain's first (the
    recipe without a base) first: each layer's keys and values checked, so that an error names the recipe that holds
    it, and a section left empty taken as nothing changed (:func:`_checked_layer`); ``_base_: ~/x.yaml`` is under the
    home folder, as a text key's value. An empty recipe (without a base, no setting: nothing, or sections left empty)
    or a chain that comes back to a recipe already in it is a ConfigError (the first would silently train the
    full-size defaults)."""
    path = resolve_recipe_path(name)
    if path.resolve() in _chain:
        raise ConfigError(f"recipe {path}: its _base_ chain comes back to itself "
                          f"({' -> '.join(p.name for p in (*_chain, path))})")
    from mme.data.lists import _utf8_text  # (a recipe's bytes are read as a list's: UTF-16 told, a bad byte placed)

    try:
        data = yaml.load(_utf8_text(path.read_bytes(), f"recipe {path}"), Loader=_RecipeLoader)
    except DataError as e:  # (not UTF-8 text)
        raise ConfigError(str(e)) from e
    except OSError as e:
        raise ConfigError(f"recipe {cannot_read(path, e)}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"recipe {path}: not valid YAML: {e}") from e
    except ConfigError as e:
        raise ConfigError(f"recipe {path}: {e}") from e
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"recipe {path}: expected a mapping at the top level")
    data = dict(data or {})
    base = data.pop("_base_", None)
    if _unset(base):  # (None, as null: no base)
        base = None
    _mark_recipe(data, path)
    try:
        data = _checked_layer(cls, data)
    except ConfigError as e:
        raise type(e)(f"recipe {path}: {e}") from e
    if base is None and not flatten(data):  # (nothing, or sections left empty)
        raise ConfigError(f"recipe {path}: empty (a recipe holds at least one setting; for the defaults give none)")
    if base is not None:
        if not isinstance(base, str):
            raise ConfigError(f"recipe {path}: _base_ names one recipe, got {base!r}")
        try:
            base_path = resolve_recipe_path(home(fs_name(base)), path)
        except ConfigError as e:
            raise ConfigError(f"recipe {path}: its _base_: {e}") from e
        return [*_recipe_layers(base_path, cls, (*_chain, path.resolve())), (path, data)]
    return [(path, data)]


def _mark_recipe(data: Any, path: Path) -> None:
    """Record ``path`` as the recipe of each :class:`_NullText` among ``data``'s values, which its error names (a
    recipe's values are bounded as it is read, its YAML aliases expanded: :data:`MAX_RECIPE_VALUES`)."""
    values = data.values() if isinstance(data, dict) else data if isinstance(data, list) else ()
    for value in values:
        if isinstance(value, _NullText):
            value.recipe = path
        else:
            _mark_recipe(value, path)


def load_config(cls: type[T], recipe: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """defaults <- recipe <- overrides, as a typed dataclass, which records the keys the overrides set
    (:func:`given_in`)."""
    path = resolve_recipe_path(recipe) if recipe is not None else None
    layers = _recipe_layers(path, cls) if path is not None else []
    update = parse_overrides(overrides or [])
    cfg = from_dict(cls, merge_layer(cls, _merged(cls, layers), update))
    if path is not None:
        _say(logging.INFO, f"config: recipe {path}")
    given = flatten(update)
    setattr(cfg, _GIVEN, frozenset(given))
    setattr(cfg, _RECIPE, path)
    unused = keys_without_effect(cfg)
    for key in sorted(given.keys() & unused.keys()):
        _say(logging.WARNING, f"config: {key}={given[key]} has no effect: {unused[key]}")
    _warn_shadowed(cfg, [*layers, (None, update)])
    return cfg


def _warn_shadowed(cfg: Any, layers: list[tuple[Path | None, dict[str, Any]]]) -> None:
    """Warn about each key that a recipe over its base or an override (the last of ``layers``, its file None) sets
    and that a key set in the same layer or an earlier one wins over (:func:`keys_shadowed`: ``train.epochs`` under
    or beside ``train.steps``): it changes nothing. Judged on the config the layers make, so a later layer that
    unsets the winner (``train.steps=null``) gives the key its effect. A key the winner is set after is not (a
    recipe's epochs under the command line's steps: the later choice); nor is a recipe without a base (a run's
    ``config.yaml`` read back holds both keys)."""
    where = {key: i for i, (_, layer) in enumerate(layers) for key in flatten(layer)}  # each key's last layer
    given = flatten(layers[-1][1])

    def said(key: str, recipe: Path | None) -> str:  # (an override as written: optim.warmup_epochs=1, not 1.0)
        value = given[key] if where.get(key) == len(layers) - 1 else operator.attrgetter(key)(cfg)
        return f"{key}={value}" if recipe is None else f"{key}: {value}"

    for name, winner in keys_shadowed(cfg).items():
        recipe = layers[where[name]][0] if name in where else None
        if name not in where or (where[name] == 0 and recipe is not None) or where.get(winner, -1) > where[name]:
            continue
        if where.get(winner) == where[name]:
            whence, advice = "beside it", "give one of the two"
        elif recipe is None:
            whence, advice = "before it", f"add {winner}=null to use {name.rpartition('.')[2]}"
        else:
            whence, advice = "before it", (f"add {winner}=null, or {winner.rpartition('.')[2]}: null to the recipe, "
                                           f"to use {name.rpartition('.')[2]}")
        _say(logging.WARNING, f"{'config' if recipe is None else f'recipe {recipe}'}: {said(name, recipe)} has no "
                              f"effect: {said(winner, recipe)} set {whence} wins ({advice})")


def _say(level: int, said: str) -> None:
    """Log ``said`` at ``level``, once within :func:`warnings_once`."""
    if _said_once is None or said not in _said_once:
        log.log(level, "%s", said)
        if _said_once is not None:
            _said_once.add(said)


_said_once: set[str] | None = None
"""Within :func:`warnings_once`, the lines of :func:`load_config` (the recipe read, keys given without effect or
shadowed) and of :func:`merge_layer` (a preset's drops) said so far."""


@contextlib.contextmanager
def warnings_once() -> Iterator[None]:
    """Within the block, :func:`load_config` and :func:`merge_layer` say each of their lines (the recipe read, a key
    given without effect or shadowed, a preset's drops) once: a job that loads configs of the same overrides again
    and again (mme demo, one per row) says its user's once."""
    global _said_once
    before, _said_once = _said_once, set() if _said_once is None else _said_once
    try:
        yield
    finally:
        _said_once = before


MAX_REPEATS = 1024
"""The most a count of repeated work takes: blocks of the model (``model.depth``, ``model.decoder_depth``; ViT-L has
24), raw steps of a track (``target.track_length``; the recipes' 4 to 6), ops or clips per video
(``augment.randaug_ops``: RandAugment's 2 to 4; ``task.repeated_aug``: VideoMAE's 2). Past it, each hung the model's
build or the first batch, or failed in an allocation (:func:`check_within`)."""


def check_within(key: str, value: float | None, least: float | None = None, most: float | None = None,
                 why: str = "") -> None:
    """Refuse a config key's ``value`` below ``least`` or above ``most`` (None: unbounded; a None value: unset, taken)
    in one line naming ``key``, the bound and ``why`` it is one: the bounds of values no research use gives that
    would hang the run's start, fail with a traceback once the work began, or train on nonsense without a word
    (``model.decoder_depth=100000``, ``data.decode_threads=3e9``, ``model.norm_eps=1e30``)."""
    if value is None or ((least is None or value >= least) and (most is None or value <= most)):
        return
    shown = {k: f"{v:g}" if isinstance(v, float) else str(v) for k, v in (("v", value), ("l", least), ("m", most))}
    bound = f"in [{shown['l']}, {shown['m']}]" if least is not None and most is not None else \
        f"at least {shown['l']}" if least is not None else f"at most {shown['m']}"
    raise ConfigError(f"{key} must be {bound}, got {shown['v']}" + (f" ({why})" if why else ""))


def keys_without_effect(cfg: Any, prefix: str = "") -> dict[str, str]:
    """``{dotted key: why it has no effect}`` over ``cfg`` and its sections, each section's from its own
    ``keys_without_effect()`` where it has one (``data.scales`` beside ``data.crop=random_resized``):
    :func:`load_config` warns about those the overrides give, as about a key another wins over (:func:`keys_shadowed`).
    (The target's keys that its kind does not use are refused instead, before any work:
    ``TargetConfig.settings_without_effect``, as a target of other settings gives other targets.)"""
    own = cfg.keys_without_effect() if hasattr(cfg, "keys_without_effect") else {}
    out = {f"{prefix}{k}": why for k, why in own.items()}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out.update(keys_without_effect(value, f"{prefix}{f.name}."))
    return out


def shadowed_by(cls: type) -> dict[str, str]:
    """``{dotted key: the key that wins over it where set}`` over the sections of config dataclass ``cls``: each
    section's ``SHADOWED_BY`` (``train.epochs``: ``train.steps``)."""
    hints = field_types(cls)
    return {f"{f.name}.{name}": f"{f.name}.{winner}" for f in dataclasses.fields(cls)
            for name, winner in getattr(hints[f.name], "SHADOWED_BY", {}).items()}


def keys_shadowed(cfg: Any) -> dict[str, str]:
    """``{dotted key: the key that wins over it}`` over the sections of ``cfg``: the keys of :func:`shadowed_by`
    whose winner is set (``train.epochs`` beside ``train.steps``), which change nothing."""
    return {key: winner for key, winner in shadowed_by(type(cfg)).items()
            if operator.attrgetter(winner)(cfg) is not None}


_GIVEN = "_given_keys"
_RECIPE = "_recipe_path"


def given_in(cfg: Any) -> frozenset[str]:
    """The dotted keys the overrides of the :func:`load_config` that made ``cfg`` set (each key of a mapping value;
    none for a config made otherwise): what a run takes as given on the command line (a stride chosen over the
    checkpoint's run's, a value warned about as ignored on resume), so that a call from Python behaves as the
    command with the same overrides."""
    return getattr(cfg, _GIVEN, frozenset())


def recipe_of(cfg: Any) -> Path | None:
    """The recipe file the :func:`load_config` that made ``cfg`` read (None for none, or a config made otherwise),
    as :func:`given_in` records its overrides' keys."""
    return getattr(cfg, _RECIPE, None)
