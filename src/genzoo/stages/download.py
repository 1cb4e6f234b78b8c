"""The `download` stage: the IDX files of `data.dataset` from a local mirror or the official mirrors, checked."""

from __future__ import annotations

from pathlib import Path

from genzoo.data.download import download, mirror_folders
from genzoo.params import Params


def download_stage(params: Params, out: Path, offline: bool) -> None:
    files = download(params.data.dataset, out / params.data.dataset, mirror_folders(params.data.mirror),
                     use_network=not offline)
    print(f"{params.data.dataset}: {len(files)} files verified in {out / params.data.dataset}")
