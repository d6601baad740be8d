"""The kernels' identity hash: what a tuned bucket records, and what makes it stale."""

from vitune.kernels.vision_attn.identity import code_tokens, kernel_hash

SOURCE = '''def tile(x):
    # the tile's width
    return x * 64
'''


def test_comments_and_blank_lines_do_not_count():
    commented = SOURCE.replace("# the tile's width", "# the width of one tile (see docs)")
    spaced = SOURCE.replace("def tile(x):\n", "def tile(x):\n\n")
    assert code_tokens(commented) == code_tokens(spaced) == code_tokens(SOURCE)


def test_code_counts():
    assert code_tokens(SOURCE.replace("64", "128")) != code_tokens(SOURCE)
    nested = SOURCE.replace("    return x * 64", "    if x:\n        return x * 64")
    assert code_tokens(nested) != code_tokens(SOURCE)


def test_the_hash_is_twelve_hex_digits_and_stable():
    assert len(kernel_hash()) == 12 and int(kernel_hash(), 16) >= 0
    kernel_hash.cache_clear()
    first = kernel_hash()
    kernel_hash.cache_clear()
    assert kernel_hash() == first
