"""The policy loader: strict YAML/JSON, every problem reported with its file, line and field."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import DefinitionError, Problem
from gateway.policy import rules
from gateway.policy.loader import load_policies_dir, parse_policy
from gateway.policy.rules import RuleSpec
from gateway.policy.schema import FIELD_NAMES, Policy

DOMAINS = ("factual", "math", "code")


def problems(text: str | dict[str, Any], source: str = "p.yaml", **kw: Any) -> list[Problem]:
    with pytest.raises(DefinitionError) as info:
        parse_policy(text if isinstance(text, dict) else textwrap.dedent(text), source=source, domains=DOMAINS, **kw)
    return info.value.problems


def by_field(found: list[Problem]) -> dict[str, Problem]:
    return {p.field: p for p in found}


class OddTokens(RuleSpec, frozen=True, kw_only=True):
    """A rule kind that exists only in these tests."""

    kind: ClassVar[str] = "test_odd_tokens"
    tokens: int = 5

    def check(self) -> list[tuple[str, str]]:
        return [("tokens", "must be odd")] if self.tokens % 2 == 0 else []


def test_valid_yaml_gives_a_policy() -> None:
    """A well-formed document loads into a typed Policy with its rules decoded."""
    policy = parse_policy(
        "domain: factual\nmax_tokens: 100\nmin_tokens: 2\nrules:\n  - repetition: {ngram: 4}\n",
        source="factual.yaml",
        domains=DOMAINS,
        expect_domain="factual",
    )
    assert isinstance(policy, Policy)
    assert policy.max_tokens == 100
    assert isinstance(policy.rules[0], rules.RULE_TYPES["repetition"])


def test_unknown_top_level_key_names_file_line_and_key() -> None:
    """An unknown key is an error that names the file, its line and the key."""
    found = problems("""\
        domain: factual
        max_tokens: 100
        bogus_field: 1
        """)
    assert found == [found[0]]
    assert (found[0].file, found[0].line, found[0].field) == ("p.yaml", 3, "bogus_field")
    assert "unknown key 'bogus_field'" in found[0].message


def test_every_problem_is_reported_at_once() -> None:
    """Type errors, unknown keys and semantic errors in one document are all listed, each located."""
    found = by_field(
        problems("""\
        domain: factual
        max_tokens: lots
        min_tokens: -1
        shadow: "yes"
        sample_full_rate: 1.5
        rules:
          - repetition: {ngram: 6, n_gram: 3}
          - repetition: {ngram: 0}
          - no_such_rule: {}
          - [not, a, mapping]
        audit: {include_text: 1, extra: true}
        """)
    )
    assert found["max_tokens"].line == 2 and "int" in found["max_tokens"].message
    assert found["min_tokens"].line == 3 and ">= 0" in found["min_tokens"].message
    assert found["shadow"].line == 4
    assert found["sample_full_rate"].line == 5
    assert found["rules[0].repetition.n_gram"].line == 7
    assert found["rules[1].repetition.ngram"].line == 8  # from the rule's own check()
    assert found["rules[2].no_such_rule"].line == 9
    assert "repetition" in found["rules[2].no_such_rule"].message  # lists the known kinds
    assert found["rules[3]"].line == 10
    assert found["audit.include_text"].line == 11 and found["audit.extra"].line == 11


def test_missing_required_keys() -> None:
    """domain and max_tokens are required; each missing one is named."""
    assert {p.field for p in problems("description: nothing else\n")} == {"domain", "max_tokens"}


@pytest.mark.parametrize(
    ("doc", "field", "words"),
    [
        ("domain: factual\nmax_tokens: 0\n", "max_tokens", "between 1"),
        ("domain: factual\nmax_tokens: 10\nmin_tokens: 10\n", "min_tokens", "less than max_tokens"),
        ("domain: factual\nmax_tokens: 10\nversion: 0\n", "version", ">= 1"),
        ("domain: factual\nmax_tokens: 10\nsample_full_rate: .nan\n", "sample_full_rate", "between 0 and 1"),
        ("domain: sports\nmax_tokens: 10\n", "domain", "unknown domain 'sports'"),
        ("domain: factual\nmax_tokens: true\n", "max_tokens", "bool"),
        ("domain: factual\nmax_tokens: 10\nrules: {repetition: {}}\n", "rules", "list"),
        ("domain: factual\nmax_tokens: 10\nrules:\n  - {repetition: {}, loop: {}}\n", "rules[0]", "one-key"),
    ],
)
def test_semantic_and_type_checks(doc: str, field: str, words: str) -> None:
    """Budgets, rates, versions, domains and rule list shapes are checked with a clear message."""
    found = by_field(problems(doc))
    assert words in found[field].message


def test_domain_must_match_the_file_or_url() -> None:
    """A document for one domain cannot be loaded as another's."""
    found = problems("domain: math\nmax_tokens: 10\n", source="factual.yaml", expect_domain="factual")
    assert found[0].field == "domain" and "'factual'" in found[0].message


def test_default_is_always_a_known_domain() -> None:
    """'default' is accepted without being listed among the domains."""
    assert parse_policy("domain: default\nmax_tokens: 10\n", source="d", domains=DOMAINS).domain == "default"


def test_duplicate_keys_are_errors() -> None:
    """YAML would silently keep the last of two equal keys; the loader refuses both the outer and nested."""
    found = problems("domain: factual\nmax_tokens: 10\nmax_tokens: 20\nrules:\n  - repetition: {ngram: 2, ngram: 3}\n")
    assert [(p.line, p.field) for p in found] == [(3, "max_tokens"), (5, "rules[0].repetition.ngram")]


def test_syntax_error_is_located() -> None:
    """Broken YAML is reported at the line the parser stopped."""
    (found,) = problems("domain: factual\nmax_tokens: 10\nrules: [\n  - x\n")
    assert found.file == "p.yaml" and found.line >= 3


@pytest.mark.parametrize("text", ["", "just a string\n", "- a\n- b\n", "42\n"])
def test_non_mapping_documents(text: str) -> None:
    """An empty document or one that is not a mapping is refused, not crashed on."""
    assert problems(text)[0].line >= 1


def test_json_object_problems_have_line_zero() -> None:
    """A JSON object given as a dict (admin PUT) has no lines; fields are still named."""
    (found,) = problems({"domain": "factual", "max_tokens": 10, "bogus_field_xyz": 1}, source="request body")
    assert (found.file, found.line, found.field) == ("request body", 0, "bogus_field_xyz")
    assert str(found).startswith("request body: bogus_field_xyz: unknown key")


def test_rule_with_null_params_takes_its_defaults() -> None:
    """`- repetition:` with no parameters is the rule with its defaults."""
    policy = parse_policy("domain: math\nmax_tokens: 9\nrules:\n  - repetition:\n", source="m", domains=DOMAINS)
    assert policy.rules == (rules.RULE_TYPES["repetition"](),)


def test_rule_kinds_are_looked_up_at_decode_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rule kind registered after import is decoded, and its own check() problems are located."""
    monkeypatch.setitem(rules.RULE_TYPES, OddTokens.kind, OddTokens)
    policy = parse_policy(
        "domain: math\nmax_tokens: 9\nrules:\n  - test_odd_tokens: {tokens: 3}\n", source="m", domains=DOMAINS
    )
    assert policy.rules == (OddTokens(tokens=3),)
    (found,) = problems("domain: math\nmax_tokens: 9\nrules:\n  - test_odd_tokens: {tokens: 4}\n")
    assert (found.line, found.field, found.message) == (4, "rules[0].test_odd_tokens.tokens", "must be odd")


def test_problem_lines_print_as_file_line_field_message() -> None:
    """Problems print in the form the CLI lists them: file:line: field: message."""
    (found,) = problems("domain: factual\nmax_tokens: 10\nwat: 1\n", source="policies/factual.yaml")
    assert str(found).startswith("policies/factual.yaml:3: wat: unknown key 'wat'")


# --- directories -----------------------------------------------------------------------------


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def dir_problems(directory: Path, files: dict[str, str]) -> list[Problem]:
    """The problems ``load_policies_dir`` raises for a directory holding ``files``."""
    with pytest.raises(DefinitionError) as info:
        load_policies_dir(write(directory, files), DOMAINS)
    return info.value.problems


def test_load_dir_gives_one_policy_per_file(tmp_path: Path) -> None:
    """Every YAML file becomes the policy of the domain it is named after."""
    found = load_policies_dir(
        write(
            tmp_path, {"default.yaml": "domain: default\nmax_tokens: 5\n", "math.yml": "domain: math\nmax_tokens: 7\n"}
        ),
        DOMAINS,
    )
    assert {d: p.max_tokens for d, p in found.items()} == {"default": 5, "math": 7}


def test_load_dir_lists_problems_of_every_file(tmp_path: Path) -> None:
    """Errors across files are collected: wrong file name, bad fields, a missing default."""
    found = dir_problems(
        tmp_path,
        {
            "math.yaml": "domain: code\nmax_tokens: 7\n",
            "code.yaml": "domain: code\nmax_tokens: -1\n",
            "factual.yaml": "domain: factual\nmax_tokens: 7\nx: 1\n",
            "notes.txt": "ignored",
        },
    )
    where = {(Path(p.file).name, p.field) for p in found}
    assert where == {("math.yaml", "domain"), ("code.yaml", "max_tokens"), ("factual.yaml", "x"), ("default.yaml", "")}


def test_load_dir_refuses_two_files_for_one_domain(tmp_path: Path) -> None:
    """math.yaml and math.yml cannot both define the math policy."""
    found = dir_problems(
        tmp_path,
        {
            "default.yaml": "domain: default\nmax_tokens: 5\n",
            "math.yaml": "domain: math\nmax_tokens: 7\n",
            "math.yml": "domain: math\nmax_tokens: 8\n",
        },
    )
    assert any("second policy file" in p.message for p in found)


def test_load_dir_missing(tmp_path: Path) -> None:
    """A directory that does not exist is a located DefinitionError."""
    with pytest.raises(DefinitionError, match="does not exist"):
        load_policies_dir(tmp_path / "nope", DOMAINS)


# --- never crashes ---------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
field_names = st.sampled_from([*FIELD_NAMES, "bogus"])
rule_items = st.dictionaries(
    st.sampled_from([*sorted(rules.RULE_TYPES), "nope"]),
    st.none() | st.dictionaries(st.text(max_size=12), json_values, max_size=3),
    min_size=1,
    max_size=2,
)
near_valid = st.fixed_dictionaries(
    {"domain": st.sampled_from(["factual", "math", "default", "other"]), "max_tokens": st.integers(-5, 5000)},
    optional={
        "min_tokens": st.integers(-5, 100),
        "rules": st.lists(rule_items, max_size=3),
        "sample_full_rate": st.floats(-1, 2),
        "shadow": st.booleans(),
    },
).flatmap(lambda base: st.dictionaries(field_names, json_values, max_size=2).map(lambda extra: {**base, **extra}))


def outcome(data: Any, source: str) -> Policy | None:
    """The loader's contract: a Policy, or a DefinitionError whose every problem is located."""
    try:
        return parse_policy(data, source=source, domains=DOMAINS)
    except DefinitionError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.file == source and isinstance(problem.line, int) and problem.line >= 0
            assert problem.message
        return None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(near_valid)
def test_never_crashes_on_near_valid_documents(doc: dict[str, Any]) -> None:
    """Documents close to valid (as dict, JSON text and YAML text) load or fail cleanly, consistently."""
    as_dict = outcome(doc, "body")
    try:
        text = json.dumps(doc, allow_nan=False)
    except ValueError:
        return
    assert outcome(text, "doc.json") == as_dict
    assert outcome(yaml.safe_dump(doc), "doc.yaml") == as_dict


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200) | st.binary(max_size=100))
def test_never_crashes_on_arbitrary_text(text: str | bytes) -> None:
    """Arbitrary text or bytes never crash the loader."""
    outcome(text, "any.yaml")


@settings(max_examples=100, deadline=None)
@given(json_values)
def test_never_crashes_on_arbitrary_json_values(value: Any) -> None:
    """Any JSON-shaped value handed over as a body never crashes the loader."""
    outcome(value, "body")


@pytest.mark.parametrize(
    "text",
    [
        "a: &x [*x]\n",
        "a: &a [1]\nb: &b [*a, *a]\nc: [*b, *b]\ndomain: factual\nmax_tokens: 1\n",
        "[" * 5000,
        "!!python/object:os.system {}\n",
        "domain: !!binary aGk=\nmax_tokens: 1\n",
        "? [a, b]\n: 1\n",
        "{domain: factual, max_tokens: 10, rules: [{repetition: &r {ngram: *r}}]}\n",
    ],
)
def test_never_crashes_on_hostile_yaml(text: str) -> None:
    """Recursive aliases, deep nesting, python tags and complex keys are refused cleanly."""
    assert outcome(text, "evil.yaml") is None
