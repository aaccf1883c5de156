from colorize.data.split import content_id, split_of


def _blobs(n, salt=b""):
    return [salt + f"image-{i}".encode() for i in range(n)]


def test_split_is_deterministic_and_near_the_fraction():
    ids = [content_id(b) for b in _blobs(4000)]
    first = [split_of(i, 0.1) for i in ids]
    assert first == [split_of(i, 0.1) for i in ids]
    share = first.count("val") / len(first)
    assert 0.08 < share < 0.12


def test_adding_images_never_moves_existing_ones():
    old = {content_id(b): None for b in _blobs(500)}
    before = {i: split_of(i, 0.2) for i in old}
    grown = list(old) + [content_id(b) for b in _blobs(500, salt=b"new")]
    after = {i: split_of(i, 0.2) for i in grown}
    assert all(after[i] == before[i] for i in before)


def test_split_depends_on_content_not_name_or_order():
    blobs = _blobs(50)
    a = [split_of(content_id(b), 0.3) for b in blobs]
    b = [split_of(content_id(b), 0.3) for b in reversed(blobs)]
    assert a == list(reversed(b))
