"""The ctypes declarations must match include/longconn.h exactly."""

from __future__ import annotations

import ctypes
import re

from longconn import _ffi

from conftest import REPO

HEADER = (REPO / "include" / "longconn.h").read_text()

# C type as written in the header -> the ctypes types that represent it.
SCALARS = {
    "lc_status": ctypes.c_uint32,
    "void": None,
    "bool": ctypes.c_bool,
    "size_t": ctypes.c_size_t,
    "uint32_t": ctypes.c_uint32,
    "int32_t": ctypes.c_int32,
    "uint64_t": ctypes.c_uint64,
    "double": ctypes.c_double,
    "const char *": ctypes.c_char_p,
    "void *": ctypes.c_void_p,
    "lc_event_cb": _ffi.EVENT_CB,
    "lc_message_cb": _ffi.MESSAGE_CB,
    "lc_messages_cb": _ffi.MESSAGES_CB,
    "lc_log_cb": _ffi.LOG_CB,
    "lc_connect_cb": _ffi.CONNECT_CB,
    "const char * const *": ctypes.POINTER(ctypes.c_char_p),
    "const uint8_t *": ctypes.POINTER(ctypes.c_uint8),
    "uint8_t *": ctypes.POINTER(ctypes.c_uint8),
    "uint64_t *": ctypes.POINTER(ctypes.c_uint64),
    "size_t *": ctypes.POINTER(ctypes.c_size_t),
    "bool *": ctypes.POINTER(ctypes.c_bool),
    "int *": ctypes.POINTER(ctypes.c_int),
    "lc_state *": ctypes.POINTER(ctypes.c_uint32),
    "lc_stats *": ctypes.POINTER(_ffi.lc_stats),
    "lc_event *": ctypes.POINTER(_ffi.lc_event),
    "const lc_buffer *": ctypes.POINTER(_ffi.lc_buffer),
    # Enums travel as uint32_t.
    "lc_event_kind": ctypes.c_uint32,
    "lc_state": ctypes.c_uint32,
    "lc_disconnect_reason": ctypes.c_uint32,
    "lc_error_kind": ctypes.c_uint32,
}
OPAQUE = {"lc_client", "lc_config", "lc_connect_request"}


def ctypes_for(c_type: str):
    c_type = " ".join(c_type.replace("*", " * ").split()).replace(" *", " *").replace("* *", "**")
    c_type = c_type.replace(" * *", " **")
    for name in OPAQUE:
        if c_type in (f"const {name} *", f"{name} *"):
            return ctypes.c_void_p
        if c_type == f"{name} **":
            return ctypes.POINTER(ctypes.c_void_p)
    return SCALARS[c_type]


def strip_comments(text: str) -> str:
    return re.sub(r"//[^\n]*|/\*.*?\*/", "", text, flags=re.S)


def header_functions() -> dict[str, tuple[str, list[str]]]:
    body = strip_comments(HEADER)
    found = {}
    for match in re.finditer(r"^([A-Za-z_][\w \*]*?)\s*\b(lc_\w+)\(([^)]*)\);", body, flags=re.M | re.S):
        ret, name, args = match.groups()
        if ret.strip().startswith("typedef"):
            continue
        params = [] if args.strip() in ("", "void") else [a.strip() for a in args.split(",")]
        types = [re.sub(r"\b\w+$", "", p).strip() for p in params]  # drop the parameter name
        found[name] = (ret.strip(), types)
    return found


def header_struct(name: str) -> list[tuple[str, str]]:
    body = strip_comments(HEADER)
    match = re.search(r"typedef struct (?:%s )?\{([^{}]*?)\} %s;" % (name, name), body, flags=re.S)
    assert match, f"struct {name} not in the header"
    fields = []
    for line in match.group(1).split(";"):
        line = " ".join(line.split())
        if line:
            c_type, field = re.match(r"(.*?)\s*(\w+)$", line).groups()
            fields.append((field, c_type))
    return fields


def test_every_header_function_is_declared_with_matching_types():
    functions = header_functions()
    assert len(functions) >= 25, "the parser found the functions"
    assert set(functions) == set(_ffi.SIGNATURES), "the binding declares exactly the header's functions"
    for name, (ret, args) in functions.items():
        restype, argtypes = _ffi.SIGNATURES[name]
        assert ctypes_for(ret) is restype, f"{name}: returns {ret}"
        assert len(args) == len(argtypes), f"{name}: {len(args)} parameters in the header"
        for position, (c_type, declared) in enumerate(zip(args, argtypes)):
            expected = ctypes_for(c_type)
            assert expected is declared or (
                getattr(expected, "_type_", None) is getattr(declared, "_type_", 0)
                and issubclass(declared, ctypes._Pointer)
            ), f"{name} parameter {position}: {c_type} declared as {declared}"
        # The loaded library really has it, with the declarations applied.
        function = getattr(_ffi.lib, name)
        assert function.argtypes == argtypes


def test_structs_match_the_header_field_by_field():
    for struct in (_ffi.lc_event, _ffi.lc_stats, _ffi.lc_buffer, _ffi.lc_connect_info):
        header_fields = header_struct(struct.__name__)
        declared = [(name, ctype) for name, ctype in struct._fields_]
        assert [f for f, _ in header_fields] == [f for f, _ in declared], struct.__name__
        for (field, c_type), (_, ctype) in zip(header_fields, declared):
            if c_type.endswith("*") and ctypes_for(c_type) is not ctypes.c_char_p:
                assert ctypes.sizeof(ctype) == ctypes.sizeof(ctypes.c_void_p), f"{struct.__name__}.{field}"
            else:
                assert ctypes_for(c_type) is ctype, f"{struct.__name__}.{field}: {c_type}"


def test_the_message_list_entry_matches_the_header():
    # lc_messages_cb's entries are read with struct, not ctypes: check the
    # format against the header's fields and a ctypes mirror's size.
    fields = [f for f, _ in header_struct("lc_message")]
    assert fields == ["data", "len", "is_text", "event_type", "event_id"]
    import struct

    class Mirror(ctypes.Structure):
        _fields_ = [("data", ctypes.c_void_p), ("len", ctypes.c_size_t), ("is_text", ctypes.c_bool),
                    ("event_type", ctypes.c_char_p), ("event_id", ctypes.c_char_p)]

    assert struct.calcsize(_ffi.LC_MESSAGE_FORMAT + "0P") == ctypes.sizeof(Mirror)


def test_enum_values_match_the_header():
    import longconn

    constants = dict(re.findall(r"\b(LC_[A-Z_]+) = (\d+)", HEADER))
    for enum, prefix in [
        (longconn.EventKind, "LC_EVENT_"),
        (longconn.State, "LC_STATE_"),
        (longconn.DisconnectReason, "LC_DISCONNECT_"),
        (longconn.ErrorKind, "LC_ERROR_"),
    ]:
        in_header = {k[len(prefix):]: int(v) for k, v in constants.items() if k.startswith(prefix)}
        assert {m.name: m.value for m in enum} == in_header, enum.__name__
