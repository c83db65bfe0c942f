"""Captioning data: an image folder plus a caption table (CSV/TSV) or a COCO-style JSON.

    captions.csv / .tsv      a header naming an `image` and a `caption` column (other columns are
                             ignored), then one row per caption; an image has as many rows as captions:
                                 image,caption
                                 1000268201.jpg,A child in a pink dress is climbing up a set of stairs .
                                 1000268201.jpg,A girl going into a wooden building .
    captions.json            COCO style: {"images": [{"id": 1, "file_name": "a.jpg"}, ...],
                                          "annotations": [{"image_id": 1, "caption": "..."}, ...]}

Image names are paths relative to the image folder (absolute paths are taken as they are). `.gz`
tables are read too. Examples are grouped by image, in the order images first appear, so every split
is a split of images, never of captions. A caption naming an image that is not in the folder is a
UserError naming the table's line; with `skip_missing=True` (training's --skip-bad-images) such
images are dropped with their captions and counted instead. Whether an image can be decoded is
checked when the images are decoded (seqtasks.image_pipeline).
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

from seqtasks.errors import UserError
from seqtasks.files import (check_input_file, check_text_head, file_chunks, first_non_utf8_line, not_utf8_error,
                            numbered_lines, open_text_file)

IMAGE_COLUMN, CAPTION_COLUMN = "image", "caption"


@dataclass(frozen=True)
class CaptionedImages:
    """Unique images, each with all of its captions, as read from one table."""

    table: str                        # the caption file as the user named it
    folder: str                       # the image folder
    paths: tuple[Path, ...]           # one per image, in first-appearance order
    captions: tuple[tuple[str, ...], ...]
    where: tuple[str, ...]            # "TABLE, line N": where each image is first named, for messages
    skipped: int = 0                  # images dropped because they were missing or unreadable

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_captions(self) -> int:
        return sum(len(c) for c in self.captions)

    def subset(self, indices, skipped: int = 0) -> "CaptionedImages":
        indices = list(indices)
        return replace(self, paths=tuple(self.paths[i] for i in indices),
                       captions=tuple(self.captions[i] for i in indices),
                       where=tuple(self.where[i] for i in indices), skipped=self.skipped + skipped)

    def describe(self) -> dict:
        digest = hashlib.sha256()
        for chunk in file_chunks(Path(self.table), "caption table"):
            digest.update(chunk)
        return {"source": self.table, "images_folder": self.folder, "images": len(self),
                "captions": self.num_captions, "skipped_images": self.skipped,
                "bytes": Path(self.table).stat().st_size, "sha256": digest.hexdigest()}


def read_captions(table: str, images: str, role: str = "training data", skip_missing: bool = False
                  ) -> CaptionedImages:
    """Read a caption table or COCO JSON whose image names are relative to the folder `images`."""
    if not images:
        raise UserError(f"no image folder given for the {role}", table, "pass --images DIR")
    folder = Path(os.path.expanduser(images))
    if folder.exists() and not folder.is_dir():
        raise UserError(f"the image folder of the {role} is a file, not a folder", str(folder),
                        "pass the folder that holds the images as --images")
    if not folder.is_dir():
        raise UserError(f"the image folder of the {role} does not exist", str(folder), "check --images")
    if not table:
        raise UserError(f"no caption table given for the {role}", None, "pass --captions FILE (CSV, TSV or COCO JSON)")
    path = check_input_file(table, "caption")
    if not check_text_head(path, "caption"):
        raise UserError(f"the caption file of the {role} is empty", table, "name the table you meant")
    name = path.name.lower().removesuffix(".gz")
    rows = _coco_rows(path, role) if name.endswith(".json") else _table_rows(path, role, name)
    grouped: dict[str, tuple[str, list[str]]] = {}
    for image, caption, where in rows:
        grouped.setdefault(image, (where, []))[1].append(caption)
    if not grouped:
        raise UserError(f"the caption file of the {role} holds no captions", table, "add image,caption rows")
    paths, captions, places, missing = [], [], [], []
    for image, (where, texts) in grouped.items():
        image_path = folder / image
        if not image_path.is_file():
            missing.append((image, where))
            continue
        paths.append(image_path)
        captions.append(tuple(texts))
        places.append(where)
    if missing and not skip_missing:
        image, where = missing[0]
        others = f" ({len(missing) - 1} more image(s) are missing too)" if len(missing) > 1 else ""
        raise UserError(f"the image {image!r} is not in the image folder {folder}{others}", where,
                        "fix the name or add the image" + (", or pass --skip-bad-images to leave such images out"
                                                           if role == "training data" else ""))
    if not paths:
        raise UserError(f"none of the images named in the {role} is in the image folder", str(folder),
                        "check --images: image names are relative to it")
    return CaptionedImages(table, str(folder), tuple(paths), tuple(captions), tuple(places), skipped=len(missing))


def _table_rows(path: Path, role: str, name: str):
    """(image, caption, where) of every row of a CSV/TSV table with an image,caption header."""
    lines = (line for _, line in numbered_lines(path, role))
    first = next(lines, "")
    delimiter = "\t" if name.endswith((".tsv", ".tab")) or ("\t" in first and "," not in first) else ","
    reader = csv.reader(_chain(first, lines), delimiter=delimiter)
    header = [column.strip().lower() for column in next(reader)]
    if IMAGE_COLUMN not in header or CAPTION_COLUMN not in header:
        raise UserError(f"the caption table has no {IMAGE_COLUMN!r} and {CAPTION_COLUMN!r} columns "
                        f"(its header: {', '.join(header) or 'empty'})", f"{path}, line 1",
                        f"start the file with a header line such as {IMAGE_COLUMN}{delimiter}{CAPTION_COLUMN}")
    image_at, caption_at = header.index(IMAGE_COLUMN), header.index(CAPTION_COLUMN)
    needed = max(image_at, caption_at) + 1
    for row in reader:
        where = f"{path}, line {reader.line_num}"
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) < needed:
            raise UserError(f"the row has {len(row)} column(s), the header {len(header)}", where,
                            "quote captions that contain the delimiter, or fix the row")
        image, caption = row[image_at].strip(), row[caption_at].strip()
        if not image or not caption:
            raise UserError(f"the row has an empty {'image name' if not image else 'caption'}", where, "fix or remove it")
        yield image, caption, where


def _chain(first: str, rest):
    yield first
    yield from rest


def _coco_rows(path: Path, role: str):
    """(image, caption, where) of every annotation of a COCO-style captions JSON."""
    try:
        with open_text_file(path) as handle:
            data = json.load(handle)
    except json.JSONDecodeError as error:
        raise UserError(f"the caption file is not valid JSON: {error.msg}", f"{path}, line {error.lineno}",
                        "fix the JSON") from None
    except UnicodeDecodeError:
        raise not_utf8_error(path, first_non_utf8_line(path) or 1, "caption") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise UserError("the JSON is not COCO-style captions", str(path),
                        'give {"images": [{"id", "file_name"}, ...], "annotations": [{"image_id", "caption"}, ...]}')
    names = {}
    for index, image in enumerate(data["images"]):
        if not isinstance(image, dict) or "id" not in image or not isinstance(image.get("file_name"), str):
            raise UserError('an entry of "images" has no "id" or "file_name"', f"{path}, images[{index}]",
                            "give every image an id and a file_name")
        names[image["id"]] = image["file_name"]
    for index, note in enumerate(data["annotations"]):
        where = f"{path}, annotations[{index}]"
        if not isinstance(note, dict) or "image_id" not in note or not isinstance(note.get("caption"), str):
            raise UserError('an annotation has no "image_id" or "caption"', where, "give every annotation both")
        if note["image_id"] not in names:
            raise UserError(f"the annotation names image id {note['image_id']!r}, which \"images\" does not list",
                            where, "add the image to \"images\" or remove the annotation")
        if not note["caption"].strip():
            raise UserError("the annotation's caption is empty", where, "fix or remove it")
        yield names[note["image_id"]], note["caption"].strip(), where
