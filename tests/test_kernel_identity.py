"""The kernels' identity hash: what a tuned bucket records, and what makes it stale."""

from vitune.kernels.vision_attn.identity import code_text, kernel_hash

SOURCE = '''def tile(x):
    # the tile's width
    return x * 64
'''


def test_comments_and_blank_lines_do_not_count():
    commented = SOURCE.replace("# the tile's width", "# the width of one tile (see docs)")
    spaced = SOURCE.replace("def tile(x):\n", "def tile(x):\n\n")
    assert code_text(commented) == code_text(spaced) == code_text(SOURCE)


def test_the_hashed_text_is_the_same_on_every_python():
    """The source's own characters (less comments), not tokens: token numbers and the
    tokens of an f-string differ between Python versions."""
    source = 'def name(x):  # why\n    return f"{x}#{x:>4}"  \n\n# note\n'
    assert code_text(source) == 'def name(x):\n    return f"{x}#{x:>4}"'


def test_code_counts():
    assert code_text(SOURCE.replace("64", "128")) != code_text(SOURCE)
    nested = SOURCE.replace("    return x * 64", "    if x:\n        return x * 64")
    assert code_text(nested) != code_text(SOURCE)


def test_the_hash_is_twelve_hex_digits_and_stable():
    assert len(kernel_hash()) == 12 and int(kernel_hash(), 16) >= 0
    kernel_hash.cache_clear()
    first = kernel_hash()
    kernel_hash.cache_clear()
    assert kernel_hash() == first
