"""Run an Argo CD Lua customization as Argo CD does: Lua 5.1, `obj` a global, one chunk.

The object goes in as a Lua table literal (JSON nulls dropped, as Argo CD's conversion
does); the chunk's return value comes back as JSON through a small serializer written
in Lua. `os` and `io` are removed first: Argo CD's VM does not offer them either.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

LUA = shutil.which("lua5.1")

HARNESS = r"""
local function encode(v)
  local t = type(v)
  if t == "nil" then return "null" end
  if t == "boolean" or t == "number" then return tostring(v) end
  if t == "string" then
    local escaped = v:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end)
    return '"' .. escaped .. '"'
  end
  local n, keys = 0, {}
  for k in pairs(v) do n = n + 1; keys[#keys + 1] = k end
  if n > 0 and n == #v then
    local out = {}
    for i = 1, #v do out[i] = encode(v[i]) end
    return "[" .. table.concat(out, ",") .. "]"
  end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local out = {}
  for _, k in ipairs(keys) do out[#out + 1] = encode(tostring(k)) .. ":" .. encode(v[k]) end
  return "{" .. table.concat(out, ",") .. "}"
end
local script = assert(io.open(arg[1])):read("*a")
local chunk = assert(loadstring(script, "=customization"))
os, io = nil, nil
obj = OBJ
local ok, result = pcall(chunk)
if not ok then
  print(encode({error = tostring(result)}))
else
  print(encode({result = result}))
end
"""


def to_lua(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # also a Lua 5.1 string literal
    if isinstance(value, list):
        return "{" + ", ".join(to_lua(v) for v in value if v is not None) + "}"
    if isinstance(value, dict):
        items = (f"[{json.dumps(k)}] = {to_lua(v)}" for k, v in value.items() if v is not None)
        return "{" + ", ".join(items) + "}"
    raise TypeError(f"no Lua form for {value!r}")


def run(script: Path, obj: dict[str, Any], tmp: Path) -> Any:
    assert LUA is not None, "lua5.1 is not installed (make system-deps)"
    harness = tmp / "harness.lua"
    harness.write_text(HARNESS.replace("OBJ", to_lua(obj), 1))
    proc = subprocess.run(
        [LUA, str(harness), str(script)], capture_output=True, text=True, timeout=10
    )
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    if "error" in answer:
        raise RuntimeError(answer["error"])
    return answer.get("result")
