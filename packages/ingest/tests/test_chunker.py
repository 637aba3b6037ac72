"""The token chunker's properties, over arbitrary text (hypothesis) and the real WordPiece."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lanewise.core.types import Document
from lanewise.ingest.chunker import TokenChunker
from lanewise.ingest.tokens import FileTokenizer, Tokenizer, WordTokenizer

WORDS = st.sampled_from(
    ["alpha", "beta", "γάμμα", "d", "e1", "x_y", ".", ",", "!", "?", "'", "(", ")", "naïve"]
)
GAPS = st.sampled_from([" ", " ", " ", "\n", "\n\n", "\t", "  ", ""])
TEXTS = st.lists(st.tuples(WORDS, GAPS), max_size=300).map(
    lambda parts: "".join(w + g for w, g in parts)
)


@st.composite
def sizes(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(1, 40))
    return size, draw(st.integers(0, size - 1))


def tokens_of(tokenizer: Tokenizer, text: str) -> list[str]:
    starts, ends = tokenizer.spans(text)
    return [text[s:e] for s, e in zip(starts, ends, strict=True)]


def check(text: str, chunker: TokenChunker) -> None:
    tok = chunker.tokenizer
    pieces = list(chunker.pieces(text))
    all_tokens = tokens_of(tok, text)
    if not all_tokens:
        assert pieces == []
        return
    for piece in pieces:
        assert piece.text == text[piece.start : piece.end]  # a substring, where it says
        assert 1 <= piece.tokens <= chunker.size  # within the limit ...
        assert len(tokens_of(tok, piece.text)) == piece.tokens  # ... counted again from its text
    # Covers the source in order: first token to last, nothing but whitespace between chunks.
    starts, ends = tok.spans(text)
    assert pieces[0].start == starts[0]
    assert pieces[-1].end == ends[-1]
    for a, b in itertools.pairwise(pieces):
        assert a.start < b.start
        if chunker.overlap == 0:
            assert b.start >= a.end
            assert text[a.end : b.start].strip() == ""
        else:
            # Overlap exact: the next chunk starts with the previous one's last `overlap` tokens.
            shared = text[b.start : a.end]
            assert tokens_of(tok, shared) == tokens_of(tok, a.text)[-chunker.overlap :]
            assert tokens_of(tok, b.text)[: chunker.overlap] == tokens_of(tok, shared)
    # Every token is in some chunk, and the tokens in order minus overlaps are the source's.
    rebuilt: list[str] = []
    for i, piece in enumerate(pieces):
        rebuilt += tokens_of(tok, piece.text)[(chunker.overlap if i else 0) :]
    assert rebuilt == all_tokens


@given(TEXTS, sizes())
def test_word_chunks_respect_size_cover_the_text_and_overlap_exactly(
    text: str, size_overlap: tuple[int, int]
) -> None:
    size, overlap = size_overlap
    check(text, TokenChunker(size=size, overlap=overlap, tokenizer=WordTokenizer()))


@given(st.text(max_size=400), sizes())
def test_any_unicode_text_chunks_without_error(text: str, size_overlap: tuple[int, int]) -> None:
    size, overlap = size_overlap
    check(text, TokenChunker(size=size, overlap=overlap))


@pytest.fixture(scope="module")
def wordpiece() -> FileTokenizer:
    from importlib.resources import files

    # The MiniLM WordPiece tokenizer.json is data the retrieval package ships; reading the
    # file (not importing the lane) is what the chunker does through the embedder.
    path = files("lanewise.retrieval.embedders") / "assets" / "all-MiniLM-L6-v2.tokenizer.json"
    return FileTokenizer(path)  # type: ignore[arg-type]


# Words apart and no word longer than a chunk: a word longer than `size` tokens must be cut
# inside, and its pieces may then count differently when tokenised alone (see chunker.py).
SPACED = st.lists(st.tuples(WORDS, GAPS.filter(bool)), max_size=300).map(
    lambda parts: "".join(w + g for w, g in parts)
)


@st.composite
def word_sizes(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(8, 40))
    return size, draw(st.integers(0, size - 1))


@given(SPACED, word_sizes())
def test_wordpiece_chunks_have_the_same_properties(
    wordpiece: FileTokenizer, text: str, size_overlap: tuple[int, int]
) -> None:
    size, overlap = size_overlap
    check(text, TokenChunker(size=size, overlap=overlap, tokenizer=wordpiece))


@given(TEXTS, sizes())
def test_wordpiece_chunks_never_exceed_the_size_in_the_chunkers_count(
    wordpiece: FileTokenizer, text: str, size_overlap: tuple[int, int]
) -> None:
    size, overlap = size_overlap
    pieces = list(TokenChunker(size=size, overlap=overlap, tokenizer=wordpiece).pieces(text))
    assert all(1 <= p.tokens <= size for p in pieces)
    assert all(p.text == text[p.start : p.end] for p in pieces)


def test_chunks_end_at_the_strongest_boundary_that_fits() -> None:
    text = "One two three.\n\nFour five six seven. Eight nine ten eleven twelve."
    pieces = [p.text for p in TokenChunker(size=8, overlap=0).pieces(text)]
    assert pieces == ["One two three.", "Four five six seven.", "Eight nine ten eleven twelve."]


def test_bad_sizes_are_refused_with_the_rule() -> None:
    with pytest.raises(ValueError, match="overlap must be"):
        TokenChunker(size=10, overlap=10)
    with pytest.raises(ValueError, match="size must be"):
        TokenChunker(size=0)


def test_core_chunker_contract_keeps_document_metadata() -> None:
    doc = Document(id="d", text="a b c d e f", source="s.txt", metadata={"page": 2})
    chunks = TokenChunker(size=4, overlap=1).chunk(doc)
    assert [c.text for c in chunks] == ["a b c d", "d e f"]
    assert all(c.metadata["page"] == 2 and c.document_id == "d" for c in chunks)
