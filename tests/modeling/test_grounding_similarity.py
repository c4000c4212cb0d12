"""Word vectors and the similarity S on a tiny hand-made vector file (hand-computed values)."""

import json
import math
import os

import numpy as np
import pytest

from sgg_d2.modeling.grounding import similarity as sim_mod
from sgg_d2.modeling.grounding import word_vectors as wv_mod
from sgg_d2.modeling.grounding.similarity import (
    build_similarity,
    grounding_similarity,
    similarity_matrix,
)
from sgg_d2.modeling.grounding.word_vectors import (
    WordVectorSource,
    class_vectors,
    load_keyed_vectors,
)

VECTORS = {"ball": [1.0, 0.0], "tennis": [0.0, 2.0], "circle": [2.0, 0.0], "stripe": [0.0, 1.0]}
TARGET, AUX = ["ball", "tennis ball"], ["circle", "stripe"]


def write_glove(path, vectors=VECTORS, header=False):
    with open(path, "w") as f:
        if header:
            f.write(f"{len(vectors)} {len(next(iter(vectors.values())))}\n")
        for word, vec in vectors.items():
            f.write(word + " " + " ".join(str(v) for v in vec) + "\n")
    return str(path)


@pytest.fixture
def glove(tmp_path):
    return write_glove(tmp_path / "tiny.txt")


def test_multi_word_names_average_their_words(glove):
    kv = load_keyed_vectors(glove)
    vecs = class_vectors(kv, ["ball", "tennis ball", "tennis_ball"])
    np.testing.assert_allclose(vecs, [[1, 0], [0.5, 1.0], [0.5, 1.0]])


def test_missing_words_error_lists_every_class(glove):
    kv = load_keyed_vectors(glove)
    with pytest.raises(KeyError) as err:
        class_vectors(kv, ["ball", "red ball", "blue box"], source="tiny.txt")
    msg = str(err.value)
    assert "2 class name(s)" in msg and "tiny.txt" in msg
    assert "'red ball' (no vector for red)" in msg
    assert "'blue box' (no vector for blue, box)" in msg


@pytest.mark.parametrize("header", [False, True])
def test_glove_and_word2vec_text_formats(tmp_path, header):
    path = write_glove(tmp_path / "v.txt", header=header)
    kv = load_keyed_vectors(path)  # "auto" tells them apart by the header line
    assert sorted(kv.key_to_index) == sorted(VECTORS)
    np.testing.assert_allclose(kv["tennis"], [0.0, 2.0])


def test_gensim_kv_format(tmp_path, glove):
    path = str(tmp_path / "v.kv")
    load_keyed_vectors(glove).save(path)
    np.testing.assert_allclose(load_keyed_vectors(path)["circle"], [2.0, 0.0])


def test_unknown_format_and_missing_file(tmp_path, glove):
    with pytest.raises(ValueError, match="format 'fasttext'"):
        load_keyed_vectors(glove, "fasttext")
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        load_keyed_vectors(str(tmp_path / "nope.txt"))


def test_each_normalisation(glove):
    kv = load_keyed_vectors(glove)
    t, a = class_vectors(kv, TARGET), class_vectors(kv, AUX)
    # t = [[1, 0], [0.5, 1]], a = [[2, 0], [0, 1]]
    np.testing.assert_allclose(similarity_matrix(t, a, "dot"), [[2, 0], [1, 1]])
    n = math.sqrt(0.5**2 + 1)
    np.testing.assert_allclose(similarity_matrix(t, a, "cosine"), [[1, 0], [0.5 / n, 1 / n]])
    e2 = math.exp(2)
    soft = similarity_matrix(t, a, "softmax")
    np.testing.assert_allclose(soft, [[e2 / (e2 + 1), 1 / (e2 + 1)], [0.5, 0.5]])
    # threshold 0.2 removes 0.119 from row 0 (renormalised), keeps row 1
    np.testing.assert_allclose(
        similarity_matrix(t, a, "softmax", threshold=0.2), [[1, 0], [0.5, 0.5]]
    )
    # the row maximum (both, when tied) survives any threshold
    np.testing.assert_allclose(
        similarity_matrix(t, a, "softmax", threshold=0.9), [[1, 0], [0.5, 0.5]]
    )
    # temperature 2: softmax([1, 0])
    e1 = math.exp(1)
    np.testing.assert_allclose(
        similarity_matrix(t, a, "softmax", temperature=2.0)[0], [e1 / (e1 + 1), 1 / (e1 + 1)]
    )
    with pytest.raises(ValueError, match="'l2'.*dot, softmax, cosine"):
        similarity_matrix(t, a, "l2")


def test_exact_names_and_mapping_file_fix_rows(tmp_path, glove):
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"tennis ball": "stripe"}))
    S = build_similarity(
        ["circle", "tennis ball", "ball"],
        AUX,
        WordVectorSource(glove, cache_dir=str(tmp_path / "cache")),
        normalization="dot",
        mapping_file=str(mapping),
    )
    np.testing.assert_allclose(S, [[1, 0], [0, 1], [2, 0]])  # exact, mapped, word vectors
    assert S.dtype == np.float32
    mapping.write_text(json.dumps({"tennis ball": "square"}))
    with pytest.raises(KeyError, match="'square'.*auxiliary classes: circle, stripe"):
        build_similarity(TARGET, AUX, WordVectorSource(glove), mapping_file=str(mapping))


def test_fixed_rows_need_no_vector_and_free_rows_need_a_file(tmp_path):
    no_file = WordVectorSource("")
    S = build_similarity(["Circle"], AUX, no_file, normalization="dot")  # case-insensitive
    np.testing.assert_allclose(S, [[1, 0]])
    with pytest.raises(ValueError, match="WORD_VECTORS is empty.*'ball'"):
        build_similarity(["ball"], AUX, no_file)


def test_cache_hit_and_invalidation(tmp_path, glove, monkeypatch):
    cache = tmp_path / "cache"
    cached = WordVectorSource(glove, cache_dir=str(cache))
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    first = build_similarity(TARGET, AUX, cached, normalization="cosine")
    assert len(os.listdir(cache)) == 1 and os.listdir(workdir) == []

    def no_loading(*args, **kwargs):
        raise AssertionError("the vector file was read again")

    monkeypatch.setattr(wv_mod, "load_keyed_vectors", no_loading)
    again = build_similarity(TARGET, AUX, cached, normalization="dot")
    np.testing.assert_allclose(again, [[2, 0], [1, 1]])  # same vectors, other normalisation
    np.testing.assert_allclose(first[0], [1, 0])
    stat = os.stat(glove)
    os.utime(glove, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # file changed
    with pytest.raises(AssertionError, match="read again"):
        build_similarity(TARGET, AUX, cached)
    # another vocabulary is another key, too
    with pytest.raises(AssertionError, match="read again"):
        sim_mod.build_similarity(["ball"], AUX, cached)


def test_default_cache_is_next_to_the_vector_file(tmp_path, glove):
    build_similarity(TARGET, AUX, WordVectorSource(glove))
    assert any(n.startswith("class_vectors_") for n in os.listdir(tmp_path / ".sgg_cache"))


def test_grounding_similarity_reads_the_config_node(tmp_path, glove):
    from detectron2.config import get_cfg

    from sgg_d2.config import add_sgg_config

    g = add_sgg_config(get_cfg()).MODEL.SGG.GROUNDING
    g.WORD_VECTORS, g.SIMILARITY = glove, "cosine"
    cache = str(tmp_path / "cache")
    expected = build_similarity(
        TARGET, AUX, WordVectorSource(glove, cache_dir=cache), normalization="cosine"
    )
    np.testing.assert_allclose(grounding_similarity(g, TARGET, AUX, cache), expected)
    assert os.listdir(cache)  # the given cache folder
    # another normalisation than the configured one
    np.testing.assert_allclose(grounding_similarity(g, TARGET, AUX, cache, "dot"), [[2, 0], [1, 1]])


def test_grounding_defaults_and_the_sgdet_protocol_of_the_vg150_configs():
    from detectron2.config import get_cfg

    from sgg_d2.config import add_sgg_config

    g = add_sgg_config(get_cfg()).MODEL.SGG.GROUNDING
    assert g.EXACT_NAME_MATCH is False  # one-hot rows are not in the paper: opt-in
    assert g.USE_REFINED_MASKS is True and g.TRANSFER_SPACE == "logits"
    for mode in ("predcls", "sgcls", "sgdet"):
        for model in ("motifs", "vctree"):
            cfg = add_sgg_config(get_cfg())
            repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            cfg.merge_from_file(f"{repo}/configs/vg150/{model}_grounded_X101_FPN_{mode}.yaml")
            assert cfg.TEST.SGG.SGDET_OVERLAP_ONLY is False  # every pair, as the plain ones
            assert cfg.MODEL.SGG.GROUNDING.SIMILARITY == "dot"
            assert cfg.MODEL.SGG.GROUNDING.EXACT_NAME_MATCH is False


@pytest.mark.parametrize("world, backbone", [("vg150", "X101"), ("synthetic", "R18")])
def test_plain_and_grounded_sgdet_configs_score_the_same_pairs(world, backbone):
    # One SGDet protocol in a grounded-vs-plain comparison (issue 29 item 4): every pair.
    from detectron2.config import get_cfg

    from sgg_d2.config import add_sgg_config

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for model in ("motifs", "vctree"):
        for name in (model, f"{model}_grounded"):
            cfg = add_sgg_config(get_cfg())
            cfg.merge_from_file(f"{repo}/configs/{world}/{name}_{backbone}_FPN_sgdet.yaml")
            assert cfg.MODEL.SGG.GROUNDING.ENABLED == name.endswith("_grounded")
            assert cfg.TEST.SGG.SGDET_OVERLAP_ONLY is False, name


def test_relative_datasets_path_is_looked_up_under_sgg_datasets(tmp_path, monkeypatch):
    from detectron2.config import get_cfg

    from sgg_d2.config import add_sgg_config

    root = tmp_path / "elsewhere"
    write_glove_at = root / "world" / "glove" / "tiny.txt"
    write_glove_at.parent.mkdir(parents=True)
    write_glove(write_glove_at)
    monkeypatch.chdir(tmp_path)  # no ./datasets here
    g = add_sgg_config(get_cfg()).MODEL.SGG.GROUNDING
    g.WORD_VECTORS, g.SIMILARITY = "datasets/world/glove/tiny.txt", "dot"
    monkeypatch.delenv("SGG_DATASETS", raising=False)
    with pytest.raises(FileNotFoundError, match="datasets/world/glove/tiny.txt .*SGG_DATASETS"):
        grounding_similarity(g, TARGET, AUX, str(tmp_path / "cache"))
    monkeypatch.setenv("SGG_DATASETS", str(root))
    np.testing.assert_allclose(
        grounding_similarity(g, TARGET, AUX, str(tmp_path / "cache")), [[2, 0], [1, 1]]
    )
