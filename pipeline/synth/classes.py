"""The AVA action classes that the synthetic dataset draws, with AVA's real ids, names and label types."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.ava.formats import LabelMap


@dataclass(frozen=True)
class SynthClass:
    """One AVA class the generator can draw: ``key`` is its short name inside the generator."""

    key: str
    ava_id: int
    name: str


# Names and ids exactly as in AVA's ava_action_list_v2.1_for_activitynet_2018.pbtxt.
CLASSES: tuple[SynthClass, ...] = (
    SynthClass("bend", 1, "bend/bow (at the waist)"),
    SynthClass("run", 10, "run/jog"),
    SynthClass("sit", 11, "sit"),
    SynthClass("stand", 12, "stand"),
    SynthClass("walk", 14, "walk"),
    SynthClass("carry", 17, "carry/hold (an object)"),
    SynthClass("instrument", 41, "play musical instrument"),
    SynthClass("hit", 64, "fight/hit (a person)"),
    SynthClass("wave", 69, "hand wave"),
    SynthClass("hug", 70, "hug (a person)"),
    SynthClass("sing", 77, "sing to (e.g., self, a person, a group)"),
    SynthClass("talk", 79, "talk to (e.g., self, a person, a group)"),
    # the listener of a talk looks like anyone standing or sitting: only the talker beside it, outside
    # its box, tells (the class that the actor-target relation has to find)
    SynthClass("listen", 80, "listen to (a person)"),
)

CLASS_BY_KEY: dict[str, SynthClass] = {c.key: c for c in CLASSES}

# Exactly one of these per person and keyframe, as in AVA's pose classes.
POSES: tuple[str, ...] = ("bend", "run", "sit", "stand", "walk")


def ava_label_type(action_id: int) -> str:
    """AVA's label type of an action id: 1-14 movement, 15-63 object, 64-80 person interaction."""
    if 1 <= action_id <= 14:
        return "PERSON_MOVEMENT"
    if 15 <= action_id <= 63:
        return "OBJECT_MANIPULATION"
    if 64 <= action_id <= 80:
        return "PERSON_INTERACTION"
    raise ValueError(f"not an AVA action id: {action_id}")


def label_map() -> LabelMap:
    """The label map of the synthetic dataset: its classes in AVA id order."""
    ordered = sorted(CLASSES, key=lambda c: c.ava_id)
    return LabelMap(
        ids=tuple(c.ava_id for c in ordered),
        names=tuple(c.name for c in ordered),
        label_types=tuple(ava_label_type(c.ava_id) for c in ordered),
    )
