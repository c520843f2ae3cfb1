from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from cxr.readingroom.queries import StudyFilter
from cxr.readingroom.schema import Read
from cxr.readingroom.service import BadRead, BadReaderKey, UnknownFilm
from tests.readingroom.conftest import MODEL, fake_png

# (filename, probabilities Covid/Normal/Viral, predicted)
FILMS = [
    ("low.png", [0.1, 0.8, 0.1], "Normal"),
    ("high.png", [0.7, 0.1, 0.2], "Covid"),
    ("mid.png", [0.2, 0.5, 0.3], "Normal"),
    ("viral.png", [0.1, 0.3, 0.6], "Viral Pneumonia"),
]


@pytest.fixture
def films(room):
    return {name: room.record(fake_png(i), name, MODEL, p, pred)["id"] for i, (name, p, pred) in enumerate(FILMS)}


def names(page) -> list[str]:
    return [x["filename"] for x in page["items"]]


def test_triage_order_puts_the_most_likely_positive_first_and_newest_the_latest(room, films):
    assert names(room.studies()) == ["high.png", "viral.png", "mid.png", "low.png"]  # by 1 - P(Normal)
    assert names(room.studies(order="newest")) == ["viral.png", "mid.png", "high.png", "low.png"]
    assert names(room.studies(StudyFilter(flagged=True))) == ["high.png", "viral.png"]


def test_paging_walks_the_list_once(room, films):
    pages = [room.studies(limit=3, offset=0), room.studies(limit=3, offset=3)]
    assert [p["total"] for p in pages] == [4, 4]
    assert names(pages[0]) + names(pages[1]) == names(room.studies())
    assert room.studies(limit=3, offset=9)["items"] == []


def test_date_range_filters_by_time_received(room, films):
    now = datetime.now(UTC)
    assert room.studies(StudyFilter(received_from=now - timedelta(minutes=5)))["total"] == 4
    assert room.studies(StudyFilter(received_from=now + timedelta(minutes=5)))["total"] == 0
    assert room.studies(StudyFilter(received_to=now - timedelta(minutes=5)))["total"] == 0
    local = (now + timedelta(minutes=1)).astimezone(timezone(timedelta(hours=5)))  # another zone, same instant
    assert room.studies(StudyFilter(received_to=local))["total"] == 4


def test_a_changed_read_keeps_the_earlier_one_and_disagreement_follows_the_current(room, films):
    ann, bob = room.add_reader("ann"), room.add_reader("bob")
    first = room.add_read(films["low.png"], ann, "covid", "faint opacity?")  # case-insensitive class name
    assert first["label"] == "Covid" and first["version"] == 1 and first["reader"] == "ann"
    assert names(room.studies(StudyFilter(disagreement=True))) == ["low.png"]
    assert names(room.studies(StudyFilter(unread=True))) == ["high.png", "viral.png", "mid.png"]
    room.add_read(films["low.png"], ann, "Normal")  # ann changes her mind: agrees with the model now
    assert room.studies(StudyFilter(disagreement=True))["total"] == 0
    room.add_read(films["low.png"], bob, "indeterminate")  # not a class: not a disagreement
    assert room.studies(StudyFilter(disagreement=True))["total"] == 0
    study = room.study(films["low.png"])
    assert [(r["reader"], r["label"], r["version"]) for r in study["history"]] == [
        ("ann", "Covid", 1),
        ("ann", "Normal", 2),
        ("bob", "indeterminate", 1),
    ]
    assert study["history"][0]["note"] == "faint opacity?"
    assert {r["reader"]: r["label"] for r in study["reads"]} == {"ann": "Normal", "bob": "indeterminate"}
    room.add_read(films["high.png"], bob, "Normal")
    listed = room.studies(StudyFilter(disagreement=True))["items"]
    assert [(x["filename"], x["disagreeing_readers"]) for x in listed] == [("high.png", ["bob"])]


def _reads(room) -> int:
    with room.session() as s:
        return s.scalar(select(func.count()).select_from(Read))


def test_bad_key_unknown_film_bad_label_each_fail_and_write_nothing(room, films):
    key = room.add_reader("ann")
    with pytest.raises(BadReaderKey):
        room.add_read(films["low.png"], "cxr_not-a-key", "Normal")
    with pytest.raises(BadReaderKey):
        room.add_read(films["low.png"], None, "Normal")
    with pytest.raises(UnknownFilm):
        room.add_read("0" * 32, key, "Normal")
    with pytest.raises(BadRead, match="not one of this model's classes"):
        room.add_read(films["low.png"], key, "Cat")
    with pytest.raises(BadRead, match="at most 2000"):
        room.add_read(films["low.png"], key, "Normal", "x" * 2001)
    assert _reads(room) == 0
    room.revoke_reader("ann")
    with pytest.raises(BadReaderKey):
        room.add_read(films["low.png"], key, "Normal")
    assert _reads(room) == 0 and room.readers()[0]["revoked_at"] is not None


def test_reader_names_are_unique_and_keys_are_stored_hashed(room):
    key = room.add_reader("ann")
    with pytest.raises(Exception, match="exists already"):
        room.add_reader("ann")
    with room.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT key_hash FROM readers").scalar()
    assert key.startswith("cxr_") and len(key) > 40 and key not in stored and len(stored) == 64


def test_a_film_the_guard_flags_leaves_the_triage_order_for_the_check_the_input_group(room, films):
    """Issue 35: a hand radiograph called "Covid, 94 %" must not sit among the likely positives."""
    hand = room.record(
        fake_png(9),
        "hand.png",
        MODEL,
        [0.94, 0.03, 0.03],
        "Covid",
        ood_score=3.2,
        in_distribution=False,
        guard_reason="feature distance 3.2 x the threshold",
        input_stats={"width": 800, "height": 1000},
    )
    ok = room.record(fake_png(10), "ok.png", MODEL, [0.05, 0.9, 0.05], "Normal", ood_score=0.4, in_distribution=True)
    assert hand["check_input"] is True and hand["guard"] == {
        "verdict": "flag",
        "score": 3.2,
        "reason": "feature distance 3.2 x the threshold",
    }
    assert ok["check_input"] is False and ok["guard"]["verdict"] == "pass"
    assert room.study(films["high.png"])["guard"] == {"verdict": "unknown", "score": None, "reason": None}
    # all films: the flagged one after every other, whatever its score; the triage list: without it
    assert names(room.studies()) == ["high.png", "viral.png", "mid.png", "low.png", "ok.png", "hand.png"]
    assert names(room.studies(StudyFilter(check_input=False))) == [
        "high.png",
        "viral.png",
        "mid.png",
        "low.png",
        "ok.png",
    ]
    assert names(room.studies(StudyFilter(check_input=True))) == ["hand.png"]
    assert names(room.studies(StudyFilter(flagged=True, check_input=False))) == ["high.png", "viral.png"]
