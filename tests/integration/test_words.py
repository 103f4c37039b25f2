"""What inspect says about a model with a loss named "loss" and an ArgMax head: no "the loss
loss" (the name said twice) and no "a ArgMax" (an article before a vowel), in the text report,
the JSON one and the manifest's reasons."""

from __future__ import annotations

import json
import re

import numpy as np

import models

_GLITCH = re.compile(r"\bthe loss loss\b(?![/:])|\ba (?:ArgMax|Identity|AddV2)\b")


def _argmax_and_loss(directory: str) -> models.Model:
    tf, tf1 = models.tf, models.tf1

    def build():
        x = tf1.placeholder(tf.float32, [None, 3], name="x")
        labels = tf1.placeholder(tf.int64, [None], name="labels")
        w = tf1.get_variable("w", initializer=np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4))
        logits = tf.matmul(x, w, name="logits")
        tf.argmax(logits, 1, name="ArgMax")
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits),
                              name="loss")
        tf1.train.GradientDescentOptimizer(0.1).minimize(loss)
    feeds = {"x:0": np.ones((2, 3), np.float32), "labels:0": np.array([1, 2])}
    return models._save(directory, build, feeds, ["loss:0"])


def test_inspect_says_each_name_once_and_an_before_a_vowel(client, tmp_path):
    model = _argmax_and_loss(str(tmp_path / "ck"))
    info = client.inspect(model.directory)
    text = info.rendered.text
    assert "ArgMax:0" in text and "loss:0" in text, text
    assert not _GLITCH.search(text), text
    assert not _GLITCH.search(info.rendered.json), info.rendered.json
    for item in list(info.outputs) + list(info.candidates):
        assert not _GLITCH.search(item.reason), item.reason
    for e in info.evidence:
        assert not _GLITCH.search(e.why), e.why
    outcome = client.freeze(model.directory, outputs=["logits", "ArgMax"])
    assert not _GLITCH.search(json.dumps(outcome.manifest)), outcome.manifest
