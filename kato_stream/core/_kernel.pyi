from typing import Any

def blocks(a: Any, b: Any, /) -> list[tuple[int, int, int]]: ...
def prepot(
    flat: Any,
    offs: Any,
    evlen: Any,
    evoffs: Any,
    sel: Any,
    state: Any,
    out_m: Any,
    out_e: Any,
    out_nb: Any,
    out_plen: Any,
    /,
) -> None: ...
def blocks_batch(
    flat: Any, offs: Any, sel: Any, state: Any, /
) -> list[list[tuple[int, int, int]]]: ...
