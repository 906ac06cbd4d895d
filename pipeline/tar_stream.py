"""WebDataset tars read from a local path or any fsspec URL, grouped into samples as webdataset groups them.

webdataset opens a tar with its own `gopen`: a local file, or a subprocess (curl, gsutil) for the few URL
schemes it knows, and s3:// is not one of them; a cloud CLI may also be missing on a node, or find its
credentials otherwise than the rest of the toolkit does. Here every tar is opened through fsspec, as the
build's other files are (pipeline/storage.py), and webdataset's own tar iterator and key grouping do the
rest, so a sample is the same bytes wherever its tar lies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from webdataset.filters import pipelinefilter
from webdataset.handlers import reraise_exception
from webdataset.tariterators import group_by_keys, tar_file_expander

from pipeline.storage import open_file

Handler = Callable[[Exception], bool]  # webdataset's: True carries on with the next tar or member


def open_tars(shards: Iterable[dict[str, Any]], handler: Handler = reraise_exception) -> Iterator[dict[str, Any]]:
    """Each {"url": ...} with its open "stream" (webdataset's url_opener, through fsspec); a stream is closed
    once the next tar is asked for. A tar that cannot be opened goes to `handler`, its URL added to the error."""
    for shard in shards:
        url = shard["url"]
        try:
            stream = open_file(url)
        except Exception as error:  # as webdataset's opener: the handler decides, whatever went wrong
            error.args = (*error.args, url)
            if handler(error):
                continue
            break
        with stream:
            yield {**shard, "stream": stream}


def tar_samples(
    shards: Iterable[dict[str, Any]],
    handler: Handler = reraise_exception,
    select_files: Callable[[str], bool] | None = None,
) -> Iterator[dict[str, Any]]:
    """The samples (`__key__`, `__url__`, member name -> bytes) of the tars `shards` name, in tar order."""
    files = tar_file_expander(open_tars(shards, handler), handler=handler, select_files=select_files)
    return group_by_keys(files, handler=handler)


tar_to_samples = pipelinefilter(tar_samples)  # the stage for a wds.DataPipeline, as wds.tarfile_to_samples
