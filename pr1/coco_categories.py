"""COCO 2017's 80 category names and their ids (1..90 with gaps), shared by the loaders and the released
reward (a neutral leaf: data and rewards both read it, neither imports the other)."""

from __future__ import annotations

from collections.abc import Mapping

_COCO_NAMES = (
    "person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant - stop_sign "
    "parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe - backpack umbrella - - "
    "handbag tie suitcase frisbee skis snowboard sports_ball kite baseball_bat baseball_glove skateboard "
    "surfboard tennis_racket bottle - wine_glass cup fork knife spoon bowl banana apple sandwich orange "
    "broccoli carrot hot_dog pizza donut cake chair couch potted_plant bed - dining_table - - toilet - tv "
    "laptop mouse remote keyboard cell_phone microwave oven toaster sink refrigerator - book clock vase "
    "scissors teddy_bear hair_drier toothbrush"
)
# COCO 2017 category ids (1..90 with gaps, "-" above): the released reward's label -> id map.
COCO_IDS: Mapping[str, int] = {
    name.replace("_", " "): i for i, name in enumerate(_COCO_NAMES.split(), start=1) if name != "-"
}
