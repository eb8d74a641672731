"""Rows of ``select_on: test`` results (the paper's optimistic protocol) are marked and
never ranked with honest ones, in every format of the board and in the report. Two real
tiny studies, one of each protocol, on the same job otherwise."""

from __future__ import annotations

import copy
import csv
import io
import json

import pytest
from conftest import SMOKE_JOB

from serbench.cli.leaderboard import render
from serbench.leaderboard.board import OPTIMISTIC_HEADING, OPTIMISTIC_MARK, make_board
from serbench.leaderboard.html import render_html
from serbench.spec import parse_job
from serbench.study.study import Study


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("optimistic")
    for name, select_on in (("honest_job", "validation"), ("optimistic_job", "test")):
        job = copy.deepcopy(SMOKE_JOB)
        job.update(name=name, select_on=select_on)
        Study(parse_job(job), root / name).run()
    return root


def test_optimistic_rows_rank_apart_after_the_honest_ones(results):
    board = make_board(results)
    headings = [heading for heading, _ in board.groups]
    assert headings == [None, OPTIMISTIC_HEADING]
    (_, honest), (_, optimistic) = board.groups
    assert [row.jobs for row in honest] == [["honest_job"]] and not honest[0].optimistic
    assert [row.jobs for row in optimistic] == [["optimistic_job"]] and optimistic[0].optimistic
    assert optimistic[0].label.endswith(OPTIMISTIC_MARK) and OPTIMISTIC_MARK not in honest[0].label


def test_by_a_key_optimistic_rows_get_groups_of_their_own(results):
    board = make_board(results, by="engine")
    assert [heading for heading, _ in board.groups] == ["engine: random", "optimistic, engine: random"]


def test_every_format_and_the_report_mark_them(results):
    board = make_board(results)
    rows = json.loads(render(board, "json"))["groups"]
    assert [[r["select_on"] for r in group["rows"]] for group in rows] == [["validation"], ["test"]]
    table = list(csv.DictReader(io.StringIO(render(board, "csv"))))
    assert [r["job"].endswith(OPTIMISTIC_MARK) for r in table] == [False, True]
    for text in (render(board, "md"), render_html(board)):
        assert OPTIMISTIC_HEADING in text and OPTIMISTIC_MARK.strip() in text
