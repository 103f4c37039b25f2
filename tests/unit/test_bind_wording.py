"""`--bind keep_prob=yes` on a float switch said "keep_prob=true is not a float32 value": a value
the user never typed (trial 10, finding 14). The message says that yes/no/true/false are read
as booleans and gives a number to use; a bool switch given a number names true/false."""

import pytest

import models
from tffreeze_server.core import engine
from tffreeze_server.core.errors import InvalidArgument
from tffreeze_server.core.spec import FreezeSpec


@pytest.fixture(scope="module")
def training(tmp_path_factory):
    return models.training_graph(str(tmp_path_factory.mktemp("training")), True)


@pytest.mark.parametrize("value", [True, False])
def test_a_boolean_for_a_float_switch_says_how_it_was_read(training, tmp_path, value):
    with pytest.raises(InvalidArgument) as refused:
        engine.freeze(training.directory, FreezeSpec(bind={"keep_prob": value}), str(tmp_path / "m.pb"))
    words = str(refused.value)
    assert "keep_prob is a float32 switch" in words and "reads as the boolean %s" % str(value).lower() in words
    assert "yes and no are booleans" in words and "keep_prob=1.0" in words, words


def test_a_number_for_a_bool_switch_names_true_and_false(training, tmp_path):
    with pytest.raises(InvalidArgument) as refused:
        engine.freeze(training.directory, FreezeSpec(bind={"is_training": 0.5}), str(tmp_path / "m.pb"))
    assert "is_training=0.5 is not a bool value: give true or false" in str(refused.value)
