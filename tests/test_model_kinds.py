"""Model kinds are named once (hyperrec.config); every table that implements them covers exactly those names."""

from typing import get_args

from hyperrec.config import BaselineKind, ModelKind
from hyperrec.export.modules import PLANS
from hyperrec.models.baselines import BASELINES
from hyperrec.train.model_factory import TASKS


def test_every_table_of_model_kinds_covers_exactly_the_named_kinds():
    assert list(BASELINES) == list(get_args(BaselineKind))
    assert list(TASKS) == list(get_args(ModelKind))
    assert list(PLANS) == list(get_args(ModelKind))
