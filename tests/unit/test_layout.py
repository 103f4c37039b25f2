import pytest

from tffreeze_server.core import layout

SAVER_DIR = [
    "checkpoint",
    "model.ckpt-10.index", "model.ckpt-10.data-00000-of-00001", "model.ckpt-10.meta",
    "model.ckpt-20.index", "model.ckpt-20.data-00000-of-00002", "model.ckpt-20.data-00001-of-00002",
    "model.ckpt-20.meta",
    "model.ckpt-5.index", "model.ckpt-5.data-00000-of-00001", "model.ckpt-5.meta",
    "events.out.tfevents.1234.host",
]


def test_parse_state_with_absolute_and_windows_paths():
    text = ('model_checkpoint_path: "C:\\\\runs\\\\model.ckpt-10"\n'
            'all_model_checkpoint_paths: "/home/a/model.ckpt-5"\n'
            'all_model_checkpoint_paths: "C:\\\\runs\\\\model.ckpt-10"\n')
    latest, every = layout.parse_state(text)
    assert latest == "C:\\runs\\model.ckpt-10"
    assert every == ["/home/a/model.ckpt-5", "C:\\runs\\model.ckpt-10"]


def test_state_file_is_matched_by_basename_never_followed():
    sel = layout.select(SAVER_DIR, 'model_checkpoint_path: "C:\\\\runs\\\\model.ckpt-10"\n')
    assert sel.checkpoint.prefix == "model.ckpt-10"
    assert "state file" in sel.reason
    assert sel.available == ["model.ckpt-5", "model.ckpt-10", "model.ckpt-20"]  # numeric, not lexical


def test_state_naming_a_missing_checkpoint_falls_back_with_a_warning():
    sel = layout.select(SAVER_DIR, 'model_checkpoint_path: "/elsewhere/model.ckpt-99"\n')
    assert sel.checkpoint.prefix == "model.ckpt-20"
    assert "not in SOURCE" in sel.warnings[0] and sel.warnings[0].endswith("instead, model.ckpt-20")


def test_state_naming_a_checkpoint_whose_index_is_missing_is_refused_not_replaced_by_an_older_one():
    """Trial 8 M3: model.ckpt-300.index lost in a copy froze step 200 with exit 0, the warning
    blaming "the upload" and not naming the step used."""
    files = ["checkpoint"] + ["model.ckpt-%d.%s" % (n, e) for n in (100, 200, 300)
                              for e in ("index", "data-00000-of-00001", "meta")]
    files.remove("model.ckpt-300.index")
    with pytest.raises(layout.SelectionError) as err:
        layout.select(files, 'model_checkpoint_path: "/runs/model.ckpt-300"\n')
    text = str(err.value)
    assert "has no model.ckpt-300.index" in text and "Or freeze a complete one: options.step 200" in text, text


def test_newest_without_state_and_sharded_data():
    sel = layout.select(SAVER_DIR)
    assert sel.checkpoint.prefix == "model.ckpt-20"
    assert sel.checkpoint.files() == ["model.ckpt-20.index", "model.ckpt-20.data-00000-of-00002",
                                      "model.ckpt-20.data-00001-of-00002", "model.ckpt-20.meta"]


def test_without_a_state_file_the_highest_step_is_said_to_be_that_not_the_newest():
    """Trial 12, finding 6: with no state file the highest -N was called "the newest", though the
    server knows no file's date (resnet-101 saved before resnet-50)."""
    files = ["%s.%s" % (p, e) for p in ("resnet-101", "resnet-50", "best-30")
             for e in ("index", "data-00000-of-00001", "meta")]
    sel = layout.select(files)
    assert sel.checkpoint.prefix == "resnet-101" and "highest step" in sel.reason and "newest" not in sel.reason
    assert any("the one with the highest step (which need not be the newest)" in w for w in sel.warnings), sel.warnings


def test_step_and_prefix():
    assert layout.select(SAVER_DIR, step=5).checkpoint.prefix == "model.ckpt-5"
    assert layout.select(SAVER_DIR, prefix="/train/box/model.ckpt-10").checkpoint.prefix == "model.ckpt-10"
    with pytest.raises(layout.SelectionError) as err:
        layout.select(SAVER_DIR, step=7)
    assert err.value.code == "NOT_FOUND" and "steps available: 5, 10, 20" in str(err.value)


def test_missing_shard_is_named():
    files = [f for f in SAVER_DIR if f != "model.ckpt-20.data-00001-of-00002"]
    with pytest.raises(layout.SelectionError) as err:
        layout.select(files)
    assert "model.ckpt-20.data-00001-of-00002" in str(err.value)


def test_meta_written_only_once_is_reused_with_a_warning():
    files = ["model-1.index", "model-1.data-00000-of-00001", "model-1.meta",
             "model-2.index", "model-2.data-00000-of-00001"]
    sel = layout.select(files)
    assert sel.checkpoint.prefix == "model-2" and sel.checkpoint.meta == "model-1.meta"
    assert "using the graph of model-1.meta" in sel.warnings[0]


def test_no_checkpoint_names_what_was_expected():
    with pytest.raises(layout.SelectionError) as err:
        layout.select(["model.meta", "notes.txt"])
    assert err.value.code == "NOT_FOUND" and "no .index file" in str(err.value)


def test_nested_source_finds_the_only_checkpoint_folder():
    paths = ["train.py", "models/checkpoint", "models/model_name.index", "models/model_name.meta",
             "models/model_name.data-00000-of-00001", "export/saved_model.pb", "export/variables/variables.index"]
    only, dirs = layout.nested_source(paths)
    assert only is None and dirs == ["export", "models"]  # a SavedModel's variables/ is part of it
    only, dirs = layout.nested_source([p for p in paths if not p.startswith("export/")])
    assert only == "models" and dirs == ["models"]
    assert layout.nested_source(["a.txt", "b/c.txt"]) == (None, [])


# --- plan: PlanFreeze's choice, the same for every client ---------------------------

CKPT = ["model.ckpt-1.index", "model.ckpt-1.data-00000-of-00001", "model.ckpt-1.meta",
        "model.ckpt-2.index", "model.ckpt-2.data-00000-of-00001", "model.ckpt-2.meta"]


def test_plan_uploads_only_the_chosen_checkpoint():
    plan = layout.plan(CKPT + ["checkpoint", "train.py"], {"checkpoint": 'model_checkpoint_path: "model.ckpt-1"\n'})
    assert plan.prefix == "model.ckpt-1" and plan.folder == ""
    assert [p for p, _ in plan.files] == ["model.ckpt-1.index", "model.ckpt-1.data-00000-of-00001",
                                          "model.ckpt-1.meta"]
    assert plan.available == ["model.ckpt-1", "model.ckpt-2"]
    assert layout.plan(CKPT, {}).prefix == "model.ckpt-2"  # no state file: the newest
    assert layout.plan(CKPT, {}, step=1).prefix == "model.ckpt-1"


def test_plan_reads_state_files_written_on_windows():
    text = ('model_checkpoint_path: "D:\\\\runs\\\\say \\"hi\\"\\\\model.ckpt-1"\n'
            'all_model_checkpoint_paths: "D:\\\\runs\\\\say \\"hi\\"\\\\model.ckpt-1"\n')
    assert layout.plan(CKPT + ["checkpoint"], {"checkpoint": text}).prefix == "model.ckpt-1"
    assert layout.plan(CKPT + ["checkpoint"], {"checkpoint": 'model_checkpoint_path: "C:/x/model.ckpt-1"'}).prefix \
        == "model.ckpt-1"


def test_plan_for_a_prefix_accepts_the_prefix_or_one_of_its_files():
    for named in ("model.ckpt-1", "model.ckpt-1.index", "model.ckpt-1.meta", "model.ckpt-1.data-00000-of-00001"):
        assert layout.plan(CKPT, {}, prefix=named).prefix == "model.ckpt-1", named
    graph = layout.plan(CKPT + ["frozen.pb"], {}, prefix="frozen.pb")  # one graph file: sent for the server to read
    assert graph.files == [("frozen.pb", layout.GRAPH_DIR + "/frozen.pb")] and graph.graph == graph.files[0][1]
    assert graph.prefix == ""
    with pytest.raises(layout.SelectionError) as err:
        layout.plan(CKPT + ["weights.h5"], {}, prefix="weights.h5")
    assert err.value.reason == "ERROR_REASON_GRAPHLESS_FORMAT"
    with pytest.raises(layout.SelectionError) as err:
        layout.plan(CKPT, {}, prefix="nope")
    assert "neither a checkpoint folder nor a checkpoint prefix" in str(err.value)


def test_plan_uploads_a_saved_model_whole_and_finds_a_nested_one():
    sm = ["saved_model.pb", "variables/variables.index", "variables/variables.data-00000-of-00001",
          "assets/vocab/words.txt"]
    plan = layout.plan(sm, {})
    assert plan.prefix == "" and sorted(p for p, _ in plan.files) == sorted(sm)
    nested = layout.plan(["README.md"] + ["export/1/" + p for p in sm], {})
    assert nested.folder == "export/1" and sorted(u for _, u in nested.files) == sorted(sm)
    assert all(local == "export/1/" + up for local, up in nested.files)
    assert nested.warnings[0].startswith("SOURCE holds no checkpoint itself; using export/1/")


def test_plan_refuses_several_folders_and_says_what_a_checkpoint_is():
    with pytest.raises(layout.SelectionError) as err:
        layout.plan(["a/" + p for p in CKPT] + ["b/" + p for p in CKPT], {})
    assert "2 folders below it do: a/, b/" in str(err.value)
    with pytest.raises(layout.SelectionError) as err:
        layout.plan(["notes.txt"], {})
    assert "no checkpoint found in SOURCE (1 files)" in str(err.value)
    deep = ["a/b/c/d/" + p for p in CKPT]  # deeper than NESTED_DEPTH folders: not looked for
    with pytest.raises(layout.SelectionError):
        layout.plan(deep, {})


def test_state_files_are_read_whatever_their_escapes():
    """Escapes as TensorFlow writes them (\\\\, \\", octal bytes of non-ASCII names) are decoded; a
    hand-written Windows path with single backslashes (\\x, \\u, \\t that are not escapes) is
    matched by basename too; nothing a user writes raises."""
    files = CKPT + ["checkpoint"]
    for text in ('model_checkpoint_path: "C:\\\\runs\\\\model.ckpt-1"',  # as TensorFlow writes it
                 'model_checkpoint_path: "C:\\x\\u12\\train\\model.ckpt-1"',  # hand-written
                 'model_checkpoint_path: "D:\\caf\\303\\251\\model.ckpt-1"'):
        assert layout.plan(files, {"checkpoint": text}).prefix == "model.ckpt-1", text
    assert layout.parse_state('model_checkpoint_path: "caf\\303\\251/m"')[0] == "caf\u00e9/m"
    for text in ('model_checkpoint_path: "\\x"', 'model_checkpoint_path: "\\377\\400"', "\\"):
        layout.parse_state(text)  # no exception


def test_a_missing_shard_suggests_the_newest_complete_step():
    """The newest checkpoint lacks a shard (copied while training wrote it): the refusal offers
    the newest complete one, a fix that works, besides completing the copy."""
    files = [f for f in SAVER_DIR if f != "model.ckpt-20.data-00001-of-00002"]
    with pytest.raises(layout.SelectionError) as err:
        layout.select(files, None)
    msg = str(err.value)
    assert "model.ckpt-20.data-00001-of-00002" in msg and "beside its .index" in msg, msg
    assert msg.endswith("Or freeze a complete one: options.step 10"), msg
    assert layout.select(files, None, step=10).checkpoint.prefix == "model.ckpt-10"  # the advice works
    with pytest.raises(layout.SelectionError) as err:  # a step asked for is not second-guessed
        layout.select(files, None, step=20)
    assert "options.step" not in str(err.value)


def test_a_step_asked_of_checkpoints_saved_without_steps_says_what_the_step_shown_is():
    """Saved without global_step=: a freeze reports the global_step stored inside, but the
    files carry none, so --step cannot pick them; the refusal says so and what to do."""
    files = ["checkpoint", "model.ckpt.index", "model.ckpt.data-00000-of-00001", "model.ckpt.meta"]
    with pytest.raises(layout.SelectionError) as err:
        layout.select(files, None, step=1000)
    assert "the checkpoints are not saved by step" in str(err.value) and "Leave options.step out" in str(err.value)


def test_a_missing_step_says_what_a_step_is_and_shows_the_latest():
    """R11 of the sixth trial: a global_step variable of 200 saved as epoch-2 (saver.save's
    global_step was the epoch) and 150 checkpoints whose list hid the latest."""
    many = ["epoch-%d.%s" % (n, ext) for n in range(1, 151) for ext in ("index", "data-00000-of-00001", "meta")]
    with pytest.raises(layout.SelectionError) as err:
        layout.select(many, step=200)
    text = str(err.value)
    assert "steps available: 1, 2, 3" in text and "and 130 more (nearest to 200: 150; the latest: 150)" in text
    assert "the -N saver.save(global_step=...) put after the prefix, not the value of a variable saved inside" in text
    with pytest.raises(layout.SelectionError) as err:  # trial 7 R11: a typo in the middle shows its neighbours
        layout.select([f for f in many if not f.startswith("epoch-99.")], step=99)
    assert "(nearest to 99: 98, 100; the latest: 150)" in str(err.value), str(err.value)


def test_two_prefixes_in_one_folder_are_said_with_the_one_taken():
    """R13 of the sixth trial: model.ckpt-50 and other.ckpt-20 (two models) in one folder, no
    state file: the newest was used with no word about the other."""
    files = ["model.ckpt-50.%s" % e for e in ("index", "data-00000-of-00001", "meta")] + \
            ["other.ckpt-20.%s" % e for e in ("index", "data-00000-of-00001", "meta")]
    sel = layout.select(files)
    assert any("2 prefixes (model.ckpt, other.ckpt)" in w and sel.checkpoint.prefix + " is used" in w
               for w in sel.warnings), sel.warnings
    one = ["model.ckpt-%d.%s" % (n, e) for n in (10, 20) for e in ("index", "data-00000-of-00001", "meta")]
    assert not layout.select(one).warnings


def test_an_earlier_step_s_meta_alone_is_named_as_that_step_s_graph():
    """Trial 7 R11: with only model.ckpt-10.meta sent beside step 30's files (what the plan
    chose), the task said "saved under a prefix of its own", a second, wrong warning beside
    the plan's "using the graph of model.ckpt-10.meta"."""
    sent = ["model.ckpt-30.index", "model.ckpt-30.data-00000-of-00001", "model.ckpt-10.meta"]
    sel = layout.select(sent)
    assert sel.warnings == ["no model.ckpt-30.meta; using the graph of model.ckpt-10.meta"], sel.warnings
    own = layout.select(["model.ckpt-30.index", "model.ckpt-30.data-00000-of-00001", "model-run.meta"])
    assert "saved under a prefix of its own" in own.warnings[0], own.warnings


def _two_models_at_step_50():
    return [p for prefix in ("model-50", "model.ckpt-50")
            for p in (prefix + ".index", prefix + ".data-00000-of-00001", prefix + ".meta")]


def test_two_checkpoints_at_the_step_asked_for_take_the_one_the_state_file_names():
    """Trial 10, finding 7: --step 50 in a folder with two unrelated step-50 checkpoints froze the one
    the state file does not name, with exit 0 and no word."""
    state = 'model_checkpoint_path: "/elsewhere/model-50"\nall_model_checkpoint_paths: "/elsewhere/model-50"\n'
    sel = layout.select(_two_models_at_step_50(), state, step=50)
    assert sel.checkpoint.prefix == "model-50"
    assert any("2 checkpoints are at global step 50" in w and "model.ckpt-50" in w for w in sel.warnings)


def test_two_checkpoints_at_the_step_asked_for_and_no_state_file_is_a_question():
    with pytest.raises(layout.SelectionError) as refused:
        layout.select(_two_models_at_step_50(), None, step=50)
    assert refused.value.code == "INVALID_ARGUMENT" and "model-50" in str(refused.value)
    assert "model.ckpt-50" in str(refused.value)
