"""Pick a dataset source from the data config."""

from __future__ import annotations

from hyperrec.config import DataConfig
from hyperrec.data.dataset import Dataset
from hyperrec.data.file_source import load_event_file
from hyperrec.data.instacart import load_instacart
from hyperrec.data.offline_store import OfflineStore
from hyperrec.data.synthetic import SyntheticShop


def load_dataset(config: DataConfig) -> Dataset:
    if config.source == "instacart":
        return load_instacart(config.path)
    if config.source == "file":
        assert config.path is not None  # guaranteed by DataConfig
        return load_event_file(config.path, config.catalog_path, config.skip_invalid)
    if config.source == "store":
        assert config.path is not None
        store = OfflineStore(config.path)
        # Only the event kinds the run uses: reading all of a 1M-event shop to keep its 5% purchases took 700 MiB.
        return Dataset(name=config.path.name, events=store.read(config.event_types), catalog=store.read_catalog())
    return SyntheticShop(config.synthetic).dataset()
