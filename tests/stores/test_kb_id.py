import hashlib

from kato_stream.stores import kb_id


def test_short_names_join_with_service() -> None:
    assert kb_id("node1") == "node1_kato"
    assert kb_id("n", "my-service") == "n_my_service"


def test_unsafe_characters_become_underscores() -> None:
    assert kb_id('a/b\\c.d"e$f*g<h>i:j|k?l-m n') == "a_b_c_d_e_f_g_h_i_j_k_l_m_n_kato"
    assert kb_id("a-b") == kb_id("a.b") == kb_id("a_b") == "a_b_kato"


def test_sixty_chars_is_kept_whole() -> None:
    node = "x" * 55  # 55 + len("_kato") == 60
    assert kb_id(node) == node + "_kato"


def test_long_names_are_truncated_with_md5() -> None:
    node = "long-node-" + "y" * 60
    safe = node.replace("-", "_")
    h = hashlib.md5(safe.encode()).hexdigest()[:8]
    out = kb_id(node)
    assert out == safe[: 60 - 4 - 10] + "_" + h + "_kato"
    assert len(out) == 60
    assert (
        kb_id(node, "svc-name")
        == safe[: 60 - 8 - 10] + "_" + hashlib.md5(safe.encode()).hexdigest()[:8] + "_svc_name"
    )


def test_truncation_hashes_utf8() -> None:
    node = "é" * 70
    assert kb_id(node).endswith("_" + hashlib.md5(node.encode("utf-8")).hexdigest()[:8] + "_kato")
