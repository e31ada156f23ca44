"""Attack: a template names an image with a path in it (``../x``, ``a/../../tmp/x``) so
that the runtime, which now reads only ``NAME.yaml`` of FORGE_IMAGE_DIR, would load a
definition from elsewhere (one the template author placed, say, in a writable directory)
and run the lab on whatever that names.

Before: every lookup parsed every definition of the directory (a name with ``/`` merely
matched none, and one broken definition made every image unresolvable, failing every
lab). After: the name is checked against the image-name pattern before any path is made
from it and refused with ``invalid_image_name``; only ``NAME.yaml`` is read, so a broken
neighbour does not stop other images.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from forge.content import content_path
from forge.images import ImageNotBuilt, InvalidImageName, resolve_image
from forge.runtime import HostSpec, LabSpec, SubnetSpec
from forge.runtime.base import SpecError
from tests.runtime.helpers import leftovers

from ..support.configured_runtime import configured_runtime
from ..support.prefixes import runtime_prefix

PLANTED = "name: evil\npackages: [bash]\n"


def _dirs(tmp_path: Path) -> tuple[Path, Path]:
    defs = tmp_path / "defs"
    defs.mkdir()
    shutil.copy(content_path("images") / "base.yaml", defs / "base.yaml")
    (tmp_path / "evil.yaml").write_text(PLANTED)  # outside the definitions directory
    return defs, tmp_path / "cache"


@pytest.mark.parametrize("name", ["../evil", "x/../../evil", "evil/..", "./evil", "Evil",
                                  "/" + "x" * 40, "a" * 33])
def test_a_name_with_a_path_is_refused_before_any_file_is_read(tmp_path: Path,
                                                               name: str) -> None:
    defs, cache = _dirs(tmp_path)
    with pytest.raises(InvalidImageName) as err:
        resolve_image(name, defs, cache)
    assert err.value.code == "invalid_image_name" and err.value.status == 422
    assert "is not a valid image name" in err.value.message and "[a-z]" in err.value.message


def test_a_broken_neighbour_definition_does_not_stop_other_images(tmp_path: Path) -> None:
    defs, cache = _dirs(tmp_path)
    (defs / "broken.yaml").write_text("name: broken\npackages: [Not_A_Package]\n")
    with pytest.raises(ImageNotBuilt) as err:  # base is read (alone) and found unbuilt
        resolve_image("base", defs, cache)
    assert err.value.code == "image_not_built"
    assert err.value.message == "image base is not built: run forge image build base"


@pytest.mark.root
def test_the_runtime_refuses_a_path_as_image_and_creates_nothing(tmp_path: Path) -> None:
    defs, cache = _dirs(tmp_path)
    prefix, state = runtime_prefix("t"), str(tmp_path / "runtime")
    with configured_runtime(tmp_path, prefix, FORGE_IMAGE_DIR=str(defs),
                            FORGE_IMAGE_CACHE=str(cache)) as rt:
        spec = LabSpec("img-path", [SubnetSpec("a", "10.76.0.0/24")],
                       [HostSpec("box", networks=[("a", None)], image="x/../../evil")])
        with pytest.raises(SpecError) as err:
            rt.create(spec)
        assert str(err.value).startswith(
            "hosts[0].image: image 'x/../../evil' is not a valid image name")
        assert leftovers(prefix, state) == [] and rt.list() == []
