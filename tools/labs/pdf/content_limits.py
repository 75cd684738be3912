"""What a page draws, bounded before mupdf draws it: inline images and forms drawn inside forms.

`stream_limits` bounds each stream object; two things in a page's drawing outgrow any one stream:

- An inline image (``BI <dict> ID <data> EI`` in a content stream) is decoded by mupdf into a
  pixmap of its declared size each time the content runs, reading words included, whatever its
  data hold: 1 KB of Flate declaring 16,000 x 16,000 RGB pixels took 931 MiB just to read the
  page's words. Its declared size is held to the image and stream limits, and its data, decoded
  through `stream_limits`' filter stages, to the stream limit.
- A form XObject runs again at each draw (``/F1 Do``): a page drawing a form 1,000 times that
  draws another 1,000 times draws it a million times (1.7 s to read the words), a third level a
  billion (half an hour); each stream stays small. What a page draws is counted: its content,
  each form's content times the times it is drawn through forms inside forms, each draw, and
  what its inline images decode to; a page may draw what one stream may hold (128 MiB). A form
  that draws itself is refused, and forms nested deeper than mupdf can run them (it stops with
  an error past 61).

Annotations' appearance streams count as forms the page draws (mupdf draws them with the page).
Patterns and Type 3 glyphs, drawn from their own streams, are not followed.

Content is not tokenised in full (a page of a hospital report is 10-30 KB of text operators): the
``BI`` and ``Do`` operators are found with a regular expression, then only the image dictionary
after a ``BI`` and the operands before a ``Do`` are read. A ``Do`` draws the first name after the
operator before it (mupdf's rule: ``/F1 /F2 Do`` draws F1). Where that name cannot be read (an
operand this reader does not parse stands between), the ``Do`` counts as drawing every form its
resources name. A content stream that cannot be parsed is left to mupdf: only what is over a
limit is refused.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from pymupdf import mupdf

from tools.labs.pdf.stream_limits import (
    MAX_IMAGE_PIXELS,
    MAX_STREAM_BYTES,
    MIB,
    chain_decodes_past,
    unescape_names,
)

__all__ = ["DRAW_BYTES", "MAX_FORM_DEPTH", "MAX_INLINE_IMAGES", "content_problem"]

# Each XObject drawn and each inline image also counts this many bytes: mupdf spends about 1.5 us
# drawing an empty form and 2-5 us on a 2 x 2 inline image, what 30 to 100 bytes of path
# operators (0 0 1 1 re f) cost it.
DRAW_BYTES: Final = 64
# mupdf stops a page with "exception stack overflow" past 61 nested forms; a report nests 2 or 3.
MAX_FORM_DEPTH: Final = 32
# A real inline image dictionary has about ten tokens; one that runs on is not read past this
# (refused: mupdf would read it to the end).
_MAX_DICT_TOKENS: Final = 1000
_MAX_DICT_DEPTH: Final = 8
# BI operators read in one content stream. Each costs this reader about 12 us (mupdf 1.3 us): a
# million 1 x 1 images, 36 MB of content (a few KB compressed), took 12 s to check. A report
# draws a few; scanners that write strips write tens.
MAX_INLINE_IMAGES: Final = 10_000
# Do operators whose name is read the slow way (up to 256 bytes before it, 0.1 ms at worst), per
# document; past this they count as drawing every form (real ones write "/Name Do").
_MAX_SLOW_NAMES: Final = 2_000
_OPERANDS_LOOKBACK: Final = 256

_Doc = Any  # pymupdf ships no type hints
_Obj = Any  # a mupdf.PdfObj
_Node = tuple[int, int]  # a form: (its object number, the key of the resources it runs with)

# PDF's lexer classes: whitespace, and the characters that end a name or a keyword.
_WS: Final = rb"\x00\t\n\x0c\r "
_DELIMITERS: Final = rb"()<>\[\]{}/%"
_REGULAR: Final = rb"[^" + _WS + _DELIMITERS + rb"]"
# An operator token: the literal first (a literal prefix keeps the search at C speed), then the
# character before it checked (whitespace or a delimiter, not a name's slash) and the one after.
_END: Final = rb"(?![^" + _WS + _DELIMITERS + rb"])"
_DO: Final = re.compile(rb"Do(?<![^" + _WS + rb"()<>\[\]{}]Do)" + _END)
_BI: Final = re.compile(rb"BI(?<![^" + _WS + rb"()<>\[\]{}]BI)" + _END)
# The end of inline data: "EI" followed by whitespace, "<", "/" or the end, as mupdf looks for it
# once it has read the image, and after whitespace, as writers put it (compressed data may hold
# an "EI" of their own).
_EI: Final = re.compile(rb"[" + _WS + rb"]EI(?=[\x00-\x20</]|\Z)")

# The quick way to a Do's name: "/Name Do" right after an operator (or the stream's start) on a
# line without a comment. Anything else is read the slow way.
_NAME_THEN_SPACE: Final = re.compile(rb"/(" + _REGULAR + rb"*)[" + _WS + rb"]+")
_AFTER_OPERATOR: Final = re.compile(
    rb"(?:\A|(?<![^" + _WS + rb")\]>}])[A-Za-z'\"][A-Za-z0-9*'\"]{0,2})[" + _WS + rb"]*\Z"
)
# The slow way: the run of operands ending at the Do, then its first name. Strings nest three deep,
# arrays and dictionaries one; each token is atomic, so no input makes the match backtrack.
_WSC = rb"[" + _WS + rb"]+|%[^\r\n]*"
_NUMBER = rb"[+\-.0-9]" + _REGULAR + rb"*"  # mupdf reads any such run as one number (or an error)
_NAME = rb"/" + _REGULAR + rb"*"
_STRING = rb"\((?:[^()\\]|\\.|\((?:[^()\\]|\\.|\((?:[^()\\]|\\.)*\))*\))*\)"
_HEX = rb"<[0-9A-Fa-f" + _WS + rb"]*>"
_FLAT = _WSC + b"|" + _NUMBER + b"|" + _NAME + b"|" + _STRING + b"|" + _HEX
_ARRAY = rb"\[(?:" + _FLAT + rb")*+\]"
_DICT = rb"<<(?:" + _FLAT + b"|" + _ARRAY + rb")*+>>"
_OPERAND = rb"(?>" + _DICT + b"|" + _ARRAY + b"|" + _HEX + b"|" + _STRING + b"|" + _NUMBER + rb")"
_OPERAND_RUN: Final = re.compile(rb"(?:" + _WSC + b"|" + _OPERAND + b"|" + _NAME + rb")*+", re.DOTALL)
_FIRST_NAME: Final = re.compile(rb"(?:" + _WSC + b"|" + _OPERAND + rb")*+(" + _NAME + rb")?", re.DOTALL)
# One token of an inline image dictionary: a name, a delimiter, a number, a keyword.
_DICT_TOKEN: Final = re.compile(
    rb"(?:" + _WSC + rb")*+(?:(/" + _REGULAR + rb"*)|(<<|>>|[\[\]<(])|([+\-.0-9]" + _REGULAR + rb"*)"
    rb"|(" + _REGULAR + rb"+))"
)
_INTEGER: Final = re.compile(rb"[+-]?[0-9]+")
_REAL: Final = re.compile(rb"[+-]?(?:[0-9]+\.[0-9]*|\.[0-9]+)")
_STRING_EVENT: Final = re.compile(rb"\\.|[()]", re.DOTALL)

# Colour components of the colour spaces an image can name directly (full and abbreviated).
_COMPONENTS: Final = {
    "G": 1, "DeviceGray": 1, "CalGray": 1, "I": 1, "Indexed": 1, "Separation": 1,
    "RGB": 3, "DeviceRGB": 3, "CalRGB": 3, "Lab": 3,
    "CMYK": 4, "DeviceCMYK": 4,
}  # fmt: skip


def content_problem(
    doc: _Doc, *, max_stream_bytes: int = MAX_STREAM_BYTES, max_image_pixels: int = MAX_IMAGE_PIXELS
) -> str | None:
    """The first page drawing over a limit, said as "page 1 draws an inline image of 100000 x
    100000 pixels, over the 268 million an image may have (a decompression bomb?)", or None.
    Each page may draw `max_stream_bytes` in all (content, forms times their draws, inline images
    decoded); `doc`'s streams are expected within the stream limits already (`stream_problem`)."""
    pages = _Pages(doc, max_stream_bytes, max_image_pixels)
    if not pages.pdf.m_internal:  # not a PDF (mupdf opened another kind of file)
        return None
    for index in range(doc.page_count):
        problem = pages.problem(index)
        if problem is not None:
            return f"page {index + 1} draws {problem}"
    return None


@dataclass(frozen=True)
class _Scope:
    """The resources a content stream runs with: a page's, or a form's own."""

    key: int  # the resources' object number, or their owner's where they are written inline
    resources: _Obj


@dataclass
class _Drawing:
    """What one content stream draws, itself: its cost in bytes (content, draws, inline images
    decoded) and the forms it draws, with how often."""

    cost: int
    forms: Counter[_Node] = field(default_factory=Counter)
    problem: str | None = None  # an inline image over a limit


@dataclass(frozen=True)
class _InlineImage:
    """What a BI leads to: an image's problem, or what mupdf decodes it to (0: no image); the next
    BI is looked for from `resume` (past what the dictionary's reading took: each byte read once),
    and `skipped` is the span of image data mupdf surely skips (empty where it may not)."""

    problem: str | None = None
    decoded: int = 0
    resume: int = 0
    skipped: tuple[int, int] = (0, 0)


@dataclass
class _Forms:
    """The forms a scope's /XObject resources name: by name, and all of them."""

    by_name: dict[bytes, _Node]
    every: list[_Node]


@dataclass
class _Walk:
    """One page's walk through the forms it draws."""

    order: list[_Node] = field(default_factory=list)  # each form after those it draws
    height: dict[_Node, int] = field(default_factory=dict)  # forms nested in it, itself included
    cost: int = 0  # the page's content and each form drawn once: a floor of what it draws


class _Pages:
    """The document's pages, each checked on its own; forms read once, whichever page draws them."""

    def __init__(self, doc: _Doc, budget: int, max_pixels: int) -> None:
        self.pdf = mupdf.pdf_document_from_fz_document(doc.this)
        self.budget = budget
        self.max_pixels = max_pixels
        self.scopes: dict[int, _Scope] = {}
        self.forms: dict[int, _Forms] = {}
        self.drawings: dict[_Node, _Drawing] = {}
        self.slow_names = _MAX_SLOW_NAMES

    # ------------------------------------------------------------------------ a page

    def problem(self, index: int) -> str | None:
        page = mupdf.pdf_lookup_page_obj(self.pdf, index)
        resources = mupdf.pdf_dict_get_inheritable(page, mupdf.PDF_ENUM_NAME_Resources)
        scope = self._scope(resources, mupdf.pdf_to_num(page))
        contents = mupdf.pdf_dict_get(page, mupdf.PDF_ENUM_NAME_Contents)
        data = self._read(lambda: mupdf.pdf_open_contents_stream(self.pdf, contents))
        drawing = self._drawing(data, scope)
        if drawing.problem is not None:
            return drawing.problem
        forms = drawing.forms + self._appearances(page, scope)
        walk = _Walk(cost=drawing.cost)
        for node in forms:
            problem = self._visit(node, [], walk)
            if problem is not None:
                return problem
        if walk.cost > self.budget:
            return self._over(walk.cost, None)
        # Times each form is drawn: a form's draws pass to those it draws, parents first.
        draws = Counter(forms)
        for node in reversed(walk.order):
            for child, times in self.drawings[node].forms.items():
                draws[child] += draws[node] * times
        total = drawing.cost + sum(draws[node] * self.drawings[node].cost for node in walk.order)
        if total <= self.budget:
            return None
        most = max(walk.order, key=draws.__getitem__)
        inside = "" if draws[most] == forms[most] else ", in forms drawn inside forms"
        return self._over(total, f"form XObject object {most[0]} {draws[most]:,} times{inside}")

    def _over(self, total: int, detail: str | None) -> str:
        size = f"{total / MIB:,.0f} MiB" if detail else f"more than {self.budget // MIB} MiB"
        said = f" ({detail})" if detail else ""
        return f"{size} of content{said}, over the {self.budget // MIB} MiB a page may draw"

    def _visit(self, node: _Node, path: list[int], walk: _Walk) -> str | None:
        """Walk a form and those it draws (depth first: `path`, the forms above it), each once a
        page; a cycle, or nesting past `MAX_FORM_DEPTH`, is the problem."""
        number = node[0]
        if number in path:
            cycle = path[path.index(number) :]
            through = ", ".join(str(n) for n in cycle[1:])
            via = f" through object{'s' if len(cycle) > 2 else ''} {through}" if through else ""
            return f"form XObject object {cycle[0]}, which draws itself{via} (a cycle)"
        height = walk.height.get(node)
        if len(path) + (height or 1) > MAX_FORM_DEPTH:
            return f"forms nested more than {MAX_FORM_DEPTH} deep (mupdf stops past 61)"
        if height is not None:
            return None
        drawing = self._form(node)
        if drawing.problem is not None:
            return f"form XObject object {number}, which draws {drawing.problem}"
        walk.cost += drawing.cost  # every form walked is drawn at least once
        if walk.cost > self.budget:
            return self._over(walk.cost, None)
        path.append(number)
        below = 0
        for child in drawing.forms:
            problem = self._visit(child, path, walk)
            if problem is not None:
                return problem
            below = max(below, walk.height[child])
        path.pop()
        walk.height[node] = below + 1
        walk.order.append(node)
        return None

    def _appearances(self, page: _Obj, scope: _Scope) -> Counter[_Node]:
        """The normal appearance streams of the page's annotations: forms the page draws once."""
        drawn: Counter[_Node] = Counter()
        annots = mupdf.pdf_dict_get(page, mupdf.PDF_ENUM_NAME_Annots)
        for i in range(mupdf.pdf_array_len(annots)):
            appearances = mupdf.pdf_dict_get(mupdf.pdf_array_get(annots, i), mupdf.PDF_ENUM_NAME_AP)
            normal = mupdf.pdf_dict_get(appearances, mupdf.PDF_ENUM_NAME_N)
            if mupdf.pdf_is_stream(normal):
                drawn[self._node(normal, scope)] += 1
                continue
            for j in range(mupdf.pdf_dict_len(normal)):  # one appearance per state
                state = mupdf.pdf_dict_get_val(normal, j)
                if mupdf.pdf_is_stream(state):
                    drawn[self._node(state, scope)] += 1
        return drawn

    # ------------------------------------------------------------------------ objects

    def _read(self, open_stream: Callable[[], _Obj]) -> bytes:
        """A stream decoded by mupdf, at most one byte past the budget (more says the same)."""
        try:
            stream = open_stream()
            capped = mupdf.fz_open_null_filter(stream, self.budget + 1, mupdf.fz_tell(stream))
            data: bytes = mupdf.fz_read_all(capped, 0).fz_buffer_extract()
        except mupdf.FzErrorBase:  # mupdf cannot read it, so will not draw it either
            return b""
        return data

    def _scope(self, resources: _Obj, owner: int) -> _Scope:
        key = mupdf.pdf_to_num(resources) if mupdf.pdf_is_indirect(resources) else owner
        return self.scopes.setdefault(key, _Scope(key, resources))

    def _node(self, stream: _Obj, scope: _Scope) -> _Node:
        """A form as drawn from `scope`: with its own resources, or else the caller's (as mupdf)."""
        number = mupdf.pdf_to_num(stream)
        resources = mupdf.pdf_dict_get(stream, mupdf.PDF_ENUM_NAME_Resources)
        if mupdf.pdf_is_dict(resources):
            scope = self._scope(resources, number)
        return number, scope.key

    def _form(self, node: _Node) -> _Drawing:
        drawing = self.drawings.get(node)
        if drawing is None:
            data = self._read(lambda: mupdf.pdf_open_stream_number(self.pdf, node[0]))
            drawing = self.drawings[node] = self._drawing(data, self.scopes[node[1]], node[0])
        return drawing

    def _forms_in(self, scope: _Scope) -> _Forms:
        """The forms (not images: `stream_problem` bounds those) that `scope`'s /XObject names."""
        forms = self.forms.get(scope.key)
        if forms is not None:
            return forms
        forms = self.forms[scope.key] = _Forms({}, [])
        xobjects = mupdf.pdf_dict_get(scope.resources, mupdf.PDF_ENUM_NAME_XObject)
        for i in range(mupdf.pdf_dict_len(xobjects)):
            stream = mupdf.pdf_dict_get_val(xobjects, i)
            subtype = mupdf.pdf_dict_get(stream, mupdf.PDF_ENUM_NAME_Subtype)
            if not mupdf.pdf_is_stream(stream) or not mupdf.pdf_name_eq(subtype, mupdf.PDF_ENUM_NAME_Form):
                continue
            node = self._node(stream, scope)
            forms.every.append(node)
            name = mupdf.pdf_to_name(mupdf.pdf_dict_get_key(xobjects, i))
            if name.isascii():  # others are reached as forms whose name is not read
                forms.by_name[name.encode()] = node
        return forms

    def _named_components(self, name: str, scope: _Scope) -> int | None:
        """Colour components of a colour space named in the resources (None: not known here)."""
        spaces = mupdf.pdf_dict_get(scope.resources, mupdf.PDF_ENUM_NAME_ColorSpace)
        space = mupdf.pdf_dict_gets(spaces, name)
        if mupdf.pdf_is_name(space):
            return _COMPONENTS.get(mupdf.pdf_to_name(space))
        head = mupdf.pdf_to_name(mupdf.pdf_array_get(space, 0))
        if head == "ICCBased":
            count = mupdf.pdf_to_int(mupdf.pdf_dict_get(mupdf.pdf_array_get(space, 1), mupdf.PDF_ENUM_NAME_N))
            return count if count > 0 else None
        if head == "DeviceN":
            return mupdf.pdf_array_len(mupdf.pdf_array_get(space, 1)) or None
        return _COMPONENTS.get(head)

    # ------------------------------------------------------------------------ a content stream

    def _drawing(self, data: bytes, scope: _Scope, drawer: int = 0) -> _Drawing:
        """What `data` draws with `scope`'s resources; `drawer`: the form it is (0: a page)."""
        has_draws, has_images = _DO.search(data) is not None, _BI.search(data) is not None
        if not has_draws and not has_images:  # text and paths only: nearly every report page
            return _Drawing(len(data))
        # Every "Do" and "BI" counted (in text too): an overcount of a few bytes a word, and a
        # bound on the operators read below.
        drawing = _Drawing(len(data) + DRAW_BYTES * (data.count(b"Do") + data.count(b"BI")))
        if drawing.cost > self.budget:
            return drawing  # over by itself: the page is refused for its size
        content = [(0, len(data))]
        if has_images:
            content = self._inline_images(data, scope, drawing)
        if has_draws and drawing.problem is None and drawing.cost <= self.budget:
            self._draws(data, content, scope, drawing, drawer)
        return drawing

    def _inline_images(self, data: bytes, scope: _Scope, drawing: _Drawing) -> list[tuple[int, int]]:
        """Each inline image checked, and what it decodes to counted; the spans of `data` that
        are content, not image data (only data mupdf surely skips is left out)."""
        content: list[tuple[int, int]] = []
        pos = done = count = 0
        while (match := _BI.search(data, pos)) is not None:
            count += 1
            if count > MAX_INLINE_IMAGES:
                drawing.problem = f"more than {MAX_INLINE_IMAGES:,} inline images from one content stream"
                break
            image = self._inline_image(data, match.end(), scope)
            if image.problem is not None:
                drawing.problem = image.problem
                break
            drawing.cost += image.decoded
            if drawing.cost > self.budget:
                break
            start, end = image.skipped
            if end > start:
                content.append((done, start))
                done = end
            pos = max(match.end(), image.resume)
        content.append((done, len(data)))
        return content

    def _inline_image(self, data: bytes, pos: int, scope: _Scope) -> _InlineImage:
        """The image whose dictionary starts at `pos`."""
        reader = _InlineDict(data, pos)
        parsed = reader.read()
        if parsed is None:  # no dictionary mupdf reads: it goes on after what it read of it
            return _InlineImage(resume=reader.pos)
        if isinstance(parsed, _TooLong):
            return _InlineImage(f"an inline image whose dictionary runs past {_MAX_DICT_TOKENS:,} tokens")
        entries, start = parsed
        if data[start : start + 2] == b"\r\n":  # mupdf takes one whitespace byte after ID, or CR LF
            start += 1
        start += 1
        width, height = _integer(entries, "Width", "W"), _integer(entries, "Height", "H")
        if width <= 0 or height <= 0:
            return _InlineImage(resume=start)  # no image to mupdf: it reads the data as content
        image = f"an inline image of {width} x {height} pixels"
        if width * height > self.max_pixels:
            millions = self.max_pixels // 1_000_000
            return _InlineImage(
                f"{image}, over the {millions} million an image may have (a decompression bomb?)"
            )
        mask = _entry(entries, "ImageMask", "IM") is True
        bits = 1 if mask else _integer(entries, "BitsPerComponent", "BPC")
        space = _entry(entries, "ColorSpace", "CS")
        components = 1 if mask else _components(space)
        if components is None and isinstance(space, str):
            components = self._named_components(space, scope)
        decoded = width * height * (components or 1)  # mupdf's pixmap of it, 8 bits a component
        mib = self.budget // MIB
        if decoded > self.budget:
            over = f"over the {mib} MiB a stream may decode to (a decompression bomb?)"
            return _InlineImage(f"{image} that decodes to {decoded / MIB:,.0f} MiB, {over}")
        filters = _names(_entry(entries, "Filter", "F"))
        if filters:
            # The data decoded up to the EI a writer puts after whitespace (or the next BI: no
            # byte is decoded twice), and read as content too: mupdf lexes on where a filter fails.
            after = _BI.search(data, start)
            end = _EI.search(data, start, after.start() if after else len(data))
            raw = memoryview(data)[start : end.start() if end else after.start() if after else len(data)]
            parms = _entry(entries, "DecodeParms", "DP")
            if chain_decodes_past(raw, filters, parms if isinstance(parms, str) else "", self.budget):
                return _InlineImage(
                    f"an inline image whose data decode to more than {mib} MiB (a decompression bomb?)"
                )
            return _InlineImage(decoded=decoded, resume=start)
        if components is None or bits not in (1, 2, 4, 8, 16):
            return _InlineImage(decoded=decoded, resume=start)  # mupdf may fail to load it, then lexes on
        # Unfiltered data: mupdf reads exactly the declared size, whatever it holds.
        end_of_data = min(len(data), start + (width * components * bits + 7) // 8 * height)
        return _InlineImage(decoded=decoded, resume=end_of_data, skipped=(start, end_of_data))

    def _draws(
        self, data: bytes, content: list[tuple[int, int]], scope: _Scope, drawing: _Drawing, drawer: int
    ) -> None:
        """The forms each Do in the `content` spans of `data` draws, by the name before it. A Do
        whose name is not read counts as every form but the `drawer` itself: a form sharing its
        page's resources names itself there, and that guess must not make a cycle."""
        forms = self._forms_in(scope)
        if not forms.every:
            return  # images only: each draw is counted already
        unread = 0
        for match in (m for start, end in content for m in _DO.finditer(data, start, end)):
            at = match.start()
            name = _quick_name(data, at)
            if name is None:
                self.slow_names -= 1
                name = _slow_name(data, at) if self.slow_names >= 0 else _UNREAD
                if name is None:
                    continue  # no name before it: mupdf draws nothing
            if name is _UNREAD or not name.isascii():
                unread += 1
                continue
            node = forms.by_name.get(name)
            if node is not None:
                drawing.forms[node] += 1
        for node in forms.every:
            if node[0] != drawer:
                drawing.forms[node] += unread


# ---------------------------------------------------------------------------- a Do's name

_UNREAD: Final = b"\x00unread"  # a name that cannot be read: the Do counts as drawing every form


def _quick_name(data: bytes, at: int) -> bytes | None:
    """The name of a "/Name Do" written right after an operator (on a line without a comment),
    or None: the Do is written some other way."""
    slash = data.rfind(b"/", max(0, at - _OPERANDS_LOOKBACK), at)
    name = _NAME_THEN_SPACE.fullmatch(data, slash, at) if slash >= 0 else None
    before = _AFTER_OPERATOR.search(data, max(0, slash - 32), slash) if name else None
    if name is None or before is None:
        return None
    low = max(0, before.start() - _OPERANDS_LOOKBACK)
    line = max(data.rfind(b"\n", low, before.start()), data.rfind(b"\r", low, before.start()))
    if line < 0 < low or data.find(b"%", line + 1, before.start()) >= 0:
        return None  # the operator may sit in a comment
    return unescape_names(name[1])


def _slow_name(data: bytes, at: int) -> bytes | None:
    """The first name of the operands before the Do at `at`: None for none (no draw), `_UNREAD`
    where an operand this reader does not parse (or more than the look-back) comes before them.

    The run is found from the left: where one breaks off (at an operator, or bytes that are no
    token), the next can only start after, so each byte is read about once."""
    low = start = max(0, at - _OPERANDS_LOOKBACK)
    while start < at:
        run = _OPERAND_RUN.match(data, start, at)
        stop = run.end() if run else start
        if stop == at:
            break
        start = stop + 1
    if start == low > 0 or (start > 0 and data[start - 1] in b")]>}"):
        return _UNREAD
    first = _FIRST_NAME.match(data, start, at)
    return unescape_names(first[1][1:]) if first and first[1] else None


# ---------------------------------------------------------------------------- an inline image


def _entry(entries: dict[str, object], key: str, abbreviation: str) -> object:
    """An entry by its full key, else its abbreviation (mupdf looks them up in that order)."""
    return entries[key] if key in entries else entries.get(abbreviation)


def _integer(entries: dict[str, object], key: str, abbreviation: str) -> int:
    value = _entry(entries, key, abbreviation)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _names(value: object) -> list[str]:
    """A filter's name, or an array's names, in order (up to anything else)."""
    items = value if isinstance(value, list) else [value]
    names: list[str] = []
    for item in items:
        if not isinstance(item, str):
            break
        names.append(item)
    return names


def _components(space: object) -> int | None:
    """Colour components of an inline image's colour space, where written out (None: not known)."""
    if isinstance(space, str):
        return _COMPONENTS.get(space)
    if isinstance(space, list) and space and isinstance(space[0], str):
        if space[0] == "DeviceN":
            return len(space[1]) if len(space) > 1 and isinstance(space[1], list) else None
        return _COMPONENTS.get(space[0])
    return None


class _TooLong:
    """An inline image dictionary past `_MAX_DICT_TOKENS` tokens."""


_BAD: Final = object()  # a value mupdf's parser would not read


class _InlineDict:
    """The entries of an inline image's dictionary (``BI ... ID``), read as mupdf's lexer reads
    them: values as Python objects (names without the slash, strings as None), the decode
    parameters as their PDF text."""

    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.pos = pos
        self.tokens = 0

    def read(self) -> tuple[dict[str, object], int] | _TooLong | None:
        """(entries, the position right after ID), `_TooLong`, or None where mupdf would read
        no dictionary (garbage after a BI, "BI" in text)."""
        entries: dict[str, object] = {}
        while True:
            token = self._token()
            if token is None:
                return self._failed()
            kind, text = token
            if kind == "word" and text == b"ID":
                return entries, self.pos
            if kind != "name":
                return None
            key = unescape_names(text[1:]).decode("latin-1")
            start = self.pos
            value = self._value(self._token(), 0)
            if value is _BAD:
                return self._failed()
            if key in ("DecodeParms", "DP"):  # as text, for the filters' stages
                value = self.data[start : self.pos].decode("latin-1")
            entries[key] = value

    def _failed(self) -> _TooLong | None:
        return _TooLong() if self.tokens > _MAX_DICT_TOKENS else None

    def _token(self) -> tuple[str, bytes] | None:
        self.tokens += 1
        match = _DICT_TOKEN.match(self.data, self.pos) if self.tokens <= _MAX_DICT_TOKENS else None
        if match is None:
            return None
        self.pos = match.end()
        group = match.lastindex or 1
        return ("name", "delimiter", "number", "word")[group - 1], match[group]

    def _value(self, token: tuple[str, bytes] | None, depth: int) -> object:
        if token is None or depth > _MAX_DICT_DEPTH:
            return _BAD
        kind, text = token
        if kind == "name":
            return unescape_names(text[1:]).decode("latin-1")
        if kind == "number":  # a run mupdf's lexer does not read as a number is an error to it
            if _INTEGER.fullmatch(text):
                return int(text)
            return float(text) if _REAL.fullmatch(text) else _BAD
        if kind == "word":
            return {b"true": True, b"false": False, b"null": None}.get(text, _BAD)
        if text == b"[":
            return self._array(depth)
        if text == b"<<":
            return self._dict(depth)
        if text == b"<":
            end = self.data.find(b">", self.pos)
            self.pos = end + 1 if end >= 0 else len(self.data)  # read to the end, as mupdf's lexer
            return None if end >= 0 else _BAD
        if text == b"(":
            return None if self._skip_string() else _BAD
        return _BAD  # ">>" or "]" out of place

    def _array(self, depth: int) -> object:
        items: list[object] = []
        while (token := self._token()) != ("delimiter", b"]"):
            item = self._value(token, depth + 1)
            if item is _BAD:
                return _BAD
            items.append(item)
        return items

    def _dict(self, depth: int) -> object:
        entries: dict[str, object] = {}
        while (token := self._token()) != ("delimiter", b">>"):
            if token is None or token[0] != "name":
                return _BAD
            value = self._value(self._token(), depth + 1)
            if value is _BAD:
                return _BAD
            entries[token[1][1:].decode("latin-1")] = value
        return entries

    def _skip_string(self) -> bool:
        """Past a literal string (nested parentheses, escapes), each of those a token; False
        where it does not end."""
        depth = 1
        for match in _STRING_EVENT.finditer(self.data, self.pos):
            self.tokens += 1
            self.pos = match.end()
            if self.tokens > _MAX_DICT_TOKENS:
                return False
            if match[0] in (b"(", b")"):
                depth += 1 if match[0] == b"(" else -1
                if depth == 0:
                    return True
        self.pos = len(self.data)  # read to the end, as mupdf's lexer
        return False
