"""Label orders: the harness's canonical order and one explicit mapping table per dataset.

Every loader maps its dataset's own label codes (or folder names, or vote columns) to indices
into :data:`CANONICAL_CLASSES` through the tables below and nowhere else. A 7-class dataset
uses the first seven canonical classes, so index ``i`` means the same expression everywhere.
"""
from __future__ import annotations

CANONICAL_CLASSES: tuple[str, ...] = (
    "neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt",
)
SEVEN_CLASSES: tuple[str, ...] = CANONICAL_CLASSES[:7]
CANONICAL_INDEX: dict[str, int] = {name: i for i, name in enumerate(CANONICAL_CLASSES)}

# RAF-DB basic, EmoLabel/list_patition_label.txt: 1..7 in RAF order.
RAFDB_LABELS: dict[int, str] = {
    1: "surprise", 2: "fear", 3: "disgust", 4: "happy", 5: "sad", 6: "anger", 7: "neutral",
}

# FERPlus fer2013new.csv vote columns, in file order. The last two are not expressions.
FERPLUS_VOTE_COLUMNS: tuple[str, ...] = (
    "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
    "unknown", "NF",
)
FERPLUS_LABELS: dict[str, str] = {
    "neutral": "neutral", "happiness": "happy", "surprise": "surprise", "sadness": "sad",
    "anger": "anger", "disgust": "disgust", "fear": "fear", "contempt": "contempt",
}
FERPLUS_NON_EXPRESSION: tuple[str, ...] = ("unknown", "NF")

# The original FER2013 `emotion` column of fer2013.csv (not used for FERPlus labels;
# the synthetic generator fills it in so the file has the real shape).
FER2013_LABELS: dict[int, str] = {
    0: "anger", 1: "disgust", 2: "fear", 3: "happy", 4: "sad", 5: "surprise", 6: "neutral",
}

# AffectNet training.csv / validation.csv `expression`.
AFFECTNET_LABELS: dict[int, str] = {
    0: "neutral", 1: "happy", 2: "sad", 3: "surprise", 4: "fear", 5: "disgust", 6: "anger",
    7: "contempt",
}
AFFECTNET_NON_EXPRESSION: dict[int, str] = {8: "none", 9: "uncertain", 10: "no-face"}

# SFEW 2.0 class folder names.
SFEW_FOLDERS: dict[str, str] = {
    "Angry": "anger", "Disgust": "disgust", "Fear": "fear", "Happy": "happy",
    "Neutral": "neutral", "Sad": "sad", "Surprise": "surprise",
}

# ExpW label/label.lst, last column.
EXPW_LABELS: dict[int, str] = {
    0: "anger", 1: "disgust", 2: "fear", 3: "happy", 4: "sad", 5: "surprise", 6: "neutral",
}

# Generic class-folder layout: folder names accepted for each canonical class (case-insensitive).
FOLDER_ALIASES: dict[str, str] = {
    **{name: name for name in CANONICAL_CLASSES},
    "angry": "anger", "happiness": "happy", "sadness": "sad", "surprised": "surprise",
    "fearful": "fear", "afraid": "fear", "disgusted": "disgust", "contemptuous": "contempt",
}
