"""The one table of chapter durations."""

import pytest

from moralkit.chapters import CHAPTERS, chapter, chapter_minutes, describe_duration, format_minutes, remaining_minutes
from moralkit.profiles import PROFILES


def test_every_chapter_has_a_duration_for_every_profile():
    for ch in CHAPTERS.values():
        assert set(ch.minutes) == set(PROFILES)
        assert all(m > 0 for m in ch.minutes.values())
        assert ch.minutes["smoke"] <= ch.minutes["cpu"]
    assert [c.number for c in CHAPTERS.values()] == list(range(1, len(CHAPTERS) + 1))


def test_gpu_figures_are_marked_as_estimates():
    assert chapter_minutes("04_ppo_finetuning", "cpu") == (45.0, True)
    assert chapter_minutes("04_ppo_finetuning", "gpu")[1] is False
    assert "estimate" in describe_duration("03_llm_players", "gpu")
    assert "estimate" not in describe_duration("03_llm_players", "cpu")
    assert describe_duration("06_generalisation", "cpu").startswith("about 25 min, plus training")


def test_chapters_are_found_by_stem_path_or_number():
    assert chapter(3) is chapter("03_llm_players") is chapter("notebooks/03_llm_players.ipynb")
    with pytest.raises(KeyError, match="No chapter"):
        chapter(9)
    with pytest.raises(KeyError, match="profile 'auto'"):
        chapter_minutes(1, "auto")


@pytest.mark.parametrize("minutes, text", [(0.2, "under a minute"), (1, "about 1 min"), (45, "about 45 min"),
                                           (100, "about 1.7 h"), (120, "about 2 h"), (180, "about 3 h")])
def test_format_minutes(minutes, text):
    assert format_minutes(minutes) == text


def test_remaining_minutes_adds_up_and_skips_unknown_notebooks():
    assert remaining_minutes(["01_payoff_matrices", "02_moral_rewards", "99_extra"], "cpu") == 3.0
