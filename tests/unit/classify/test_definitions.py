"""Domain definition files: the strict schema and located errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.classify.definitions import DomainDefinition, load_domains, parse_domain
from gateway.errors import DefinitionError

PROJECT_DOMAINS = Path(__file__).resolve().parents[3] / "domains"

VALID = """\
name: math
description: numbers
examples:
  - "what is 2 + 2"
  - how many legs do 3 spiders have
keywords: [sum]
"""


def problems(text: str) -> list[tuple[int, str, str]]:
    with pytest.raises(DefinitionError) as info:
        parse_domain(text, "d.yaml")
    assert all(p.file == "d.yaml" for p in info.value.problems)
    return [(p.line, p.field, p.message) for p in info.value.problems]


def test_valid_document_parses() -> None:
    """A well-formed file becomes a DomainDefinition with tuples of strings."""
    d = parse_domain(VALID, "d.yaml")
    assert d == DomainDefinition(
        name="math",
        description="numbers",
        examples=("what is 2 + 2", "how many legs do 3 spiders have"),
        keywords=("sum",),
    )


def test_unknown_keys_are_errors_with_their_lines() -> None:
    """Every unknown key is reported with the line it is on."""
    found = problems(VALID + "exmaples: []\ncolour: red\n")
    assert [(line, field) for line, field, _ in found] == [(7, "exmaples"), (8, "colour")]
    assert "unknown field" in found[0][2]


def test_wrong_type_names_the_item_and_line() -> None:
    """A non-string example points at the exact list item."""
    text = "name: math\ndescription: numbers\nexamples:\n  - ok\n  - 42\n"
    assert problems(text) == [(5, "examples[1]", "Expected `str`, got `int`")]


def test_missing_fields_and_duplicates() -> None:
    """Missing required fields and duplicate keys are both reported."""
    found = problems("name: math\nname: again\n")
    fields = {field for _, field, _ in found}
    assert fields == {"name", "description", "examples"}
    assert (2, "name", "duplicate field") in found


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("name: Math Stuff\ndescription: x\nexamples: [a]\n", "name"),
        ("name: math\ndescription: '  '\nexamples: [a]\n", "description"),
        ("name: math\ndescription: x\nexamples: []\n", "examples"),
        ("name: math\ndescription: x\nexamples: ['   ']\n", "examples[0]"),
        ("name: math\ndescription: x\nexamples: a single string\n", "examples"),
    ],
)
def test_invalid_values_name_the_field(text: str, field: str) -> None:
    """Bad names, blank strings and empty or non-list examples are refused."""
    assert [f for _, f, _ in problems(text)] == [field]


def test_yaml_syntax_error_has_a_line() -> None:
    """Broken YAML is a located problem, not a crash."""
    [(line, field, message)] = problems("name: math\nexamples: [unclosed\ndescription: x\n")
    assert line >= 2 and field == "" and message.startswith("invalid YAML")


def test_non_mapping_document() -> None:
    """A list or an empty file is refused with a clear message."""
    assert problems("- a\n- b\n")[0][2].startswith("expected a mapping")
    assert problems("")[0][2].startswith("expected a mapping")


def test_load_domains_reports_every_file(tmp_path: Path) -> None:
    """One bad file fails the whole set, and all files' problems are listed together."""
    (tmp_path / "a.yaml").write_text("name: a\ndescription: x\nexamples: [q]\nextra: 1\n")
    (tmp_path / "b.yaml").write_text("name: b\ndescription: x\nexamples: 3\n")
    with pytest.raises(DefinitionError) as info:
        load_domains(tmp_path)
    assert {(Path(p.file).name, p.field) for p in info.value.problems} == {("a.yaml", "extra"), ("b.yaml", "examples")}


def test_duplicate_domain_names_across_files(tmp_path: Path) -> None:
    """Two files declaring the same domain name are refused, naming both."""
    (tmp_path / "a.yaml").write_text("name: same\ndescription: x\nexamples: [q]\n")
    (tmp_path / "b.yaml").write_text("name: same\ndescription: y\nexamples: [r]\n")
    with pytest.raises(DefinitionError) as info:
        load_domains(tmp_path)
    [problem] = info.value.problems
    assert problem.file.endswith("b.yaml") and problem.line == 1 and "a.yaml" in problem.message


def test_required_fallback_and_empty_directory(tmp_path: Path) -> None:
    """The fallback domain must exist; an empty or missing directory is an error."""
    with pytest.raises(DefinitionError, match="no domain files"):
        load_domains(tmp_path)
    with pytest.raises(DefinitionError, match="does not exist"):
        load_domains(tmp_path / "nope")
    (tmp_path / "a.yaml").write_text("name: a\ndescription: x\nexamples: [q]\n")
    with pytest.raises(DefinitionError, match="fallback domain 'general'"):
        load_domains(tmp_path, required=("general",))


def test_digest_changes_with_content(tmp_path: Path) -> None:
    """The set's digest is stable for equal content and changes when an example changes."""
    (tmp_path / "a.yaml").write_text("name: a\ndescription: x\nexamples: [q]\n")
    first = load_domains(tmp_path).digest()
    assert load_domains(tmp_path).digest() == first
    (tmp_path / "a.yaml").write_text("name: a\ndescription: x\nexamples: [r]\n")
    assert load_domains(tmp_path).digest() != first


def test_shipped_domains_are_valid_and_rich() -> None:
    """The project's domain files validate and each has at least 40 distinct examples."""
    domains = load_domains(PROJECT_DOMAINS, required=("general",))
    assert set(domains.names) == {"math", "code", "factual", "support", "small_talk", "general"}
    for d in domains.domains:
        assert len(set(d.examples)) == len(d.examples) >= 40, d.name
        assert domains.files[d.name].stem == d.name
