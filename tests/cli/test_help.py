"""Every `sentiops ... --help` reads as prose in a terminal: no paragraph broken mid-sentence.

Typer's rich help prints a help text's single line breaks where they are, so a docstring wrapped
for the source would show its source lines (`sentiops.cli.main.unwrap_help` joins them for every
command). Rendered on a terminal wide enough that nothing needs wrapping, each paragraph and each
cell of the option and command panels is one line; a second line of prose is a hard break.
"""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from sentiops.cli.main import app, unwrap_help

WIDE = "1000"  # no help paragraph is this long: every line break left is one of the source's


def commands(group: typer.Typer = app, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and group of `group`, as the words that call it."""
    found = [path]
    for info in group.registered_commands:
        name = info.name or info.callback.__name__.replace("_", "-")  # type: ignore[union-attr]
        found.append((*path, name))
    for sub in group.registered_groups:
        assert sub.typer_instance is not None and sub.name
        found += commands(sub.typer_instance, (*path, sub.name))
    return found


def render(cli: typer.Typer, words: tuple[str, ...], columns: str = WIDE) -> str:
    res = CliRunner().invoke(cli, [*words, "--help"], env={"COLUMNS": columns, "NO_COLOR": "1"})
    assert res.exit_code == 0, res.output
    return res.output


def hard_breaks(output: str) -> list[str]:
    """Lines of a wide help that continue the line above: in the description (between
    `Usage:` and the first panel), a line right under another; in a panel, a row whose name
    columns are blank and that is not a `[default: ...]`-like note."""
    found = []
    lines = output.splitlines()
    usage = next(i for i, line in enumerate(lines) if "Usage:" in line)
    previous = ""
    for line in lines[usage + 1 :]:
        text = line.strip()
        if text.startswith("╭"):
            break
        if text and previous:
            found.append(f"{previous!r} / {text!r}")
        previous = text
    for line in lines:
        if not line.startswith("│"):
            continue
        row = line.strip("│ ").rstrip()
        lead = len(line[1:]) - len(line[1:].lstrip())
        if row and lead > 5 and not row.startswith("["):
            found.append(row)
    return found


def test_every_help_is_paragraphs_not_source_lines() -> None:
    seen = commands()
    assert ("train",) in seen and ("pipeline", "submit") in seen and ("rollout", "status") in seen
    broken = {" ".join(w) or "(root)": hard_breaks(render(app, w)) for w in seen}
    assert not {k: v for k, v in broken.items() if v}


def test_the_check_finds_a_docstring_wrapped_for_the_source() -> None:
    """The check fails on what Typer does by itself with a hard-wrapped docstring; after
    unwrap_help the same command passes."""

    def wrapped() -> None:
        """Score a file of any size in bounded memory, shard by
        shard; rerun the same command to resume.

        Every output row carries its label, one probability per class,
        the model version and its status."""

    for unwrap in (False, True):
        cli = typer.Typer()
        cli.command(help=unwrap_help(wrapped.__doc__ or "") if unwrap else None)(wrapped)
        cli.command("other")(lambda: None)  # a group: the command list shows the first line
        assert bool(hard_breaks(render(cli, ()))) is not unwrap
        assert bool(hard_breaks(render(cli, ("wrapped",)))) is not unwrap


def test_help_at_100_columns_reads_on() -> None:
    """At a common terminal width the terminal wraps the paragraphs, and no line of them is
    cut short where the source's line ended."""
    text = " ".join(render(app, ("serve",), "100").split())
    assert "verified) before the server starts, so a broken model is an error here" in text
    assert hard_breaks(render(app, ("serve",))) == []


def test_the_main_job_is_make_run() -> None:
    """`sentiops --help` says what the README says: `make run` (`sentiops loop`) is the main
    job; quickstart is not."""
    import re
    from pathlib import Path

    root = render(app, ())
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    run_recipe = re.search(r"^run:.*\n\t(.+)$", makefile, re.M)
    assert run_recipe and run_recipe.group(1).endswith("sentiops loop")
    assert "The main job is `make run`: `sentiops loop`" in root
    loop_row = next(line for line in root.splitlines() if line.startswith("│ loop "))
    assert "The main job (`make run`)" in loop_row
    quickstart_row = next(line for line in root.splitlines() if line.startswith("│ quickstart "))
    assert "The main job:" not in quickstart_row
