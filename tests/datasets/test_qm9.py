"""QM9 raw records (folder, tarball), the qm9pack CSV layout, targets and units vs a direct parse."""

from __future__ import annotations

import tarfile

import numpy as np
import pytest
from ase import units

from mlip.data import DataError
from mlip.datasets import load
from mlip.datasets.qm9 import ATOM_REFS, TARGET_NAMES, load_qm9

# gdb id -> (element symbols, positions Å, the 15 raw properties of line 2)
MOLECULES = {
    1: (
        ["C", "H", "H", "H", "H"],
        [[-0.0126981359, 1.0858041578, 0.0080009958], [0.002150416, -0.0060313176, 0.0019761204],
         [1.0117308433, 1.4637511618, 0.0002765748], [-0.540815069, 1.4475266138, -0.8766437152],
         [-0.5238136345, 1.4379326443, 0.9063972942]],
        "157.7118 157.70997 157.70699 0. 13.21 -0.3877 0.1171 0.5048 35.3641 0.044749 -40.47893 -40.476062 "
        "-40.475117 -40.498597 6.469",
    ),
    3: (
        ["O", "H", "H"],
        [[-0.0343604951, 0.9775395708, 0.0076015923], [0.0647664923, 0.0205721989, 0.0015346341],
         [0.8717903737, 1.3007924048, 0.0006931336]],
        "799.58812 437.90386 282.94545 1.8511 6.31 -0.2928 0.0687 0.3615 19.0002 0.021375 -76.404702 "
        "-76.401867 -76.400922 -76.422349 6.002",
    ),
    5: (
        ["C", "H", "N"],
        [[-0.0133239314, 1.1324657151, 0.0082758861], [0.0023297284, -0.0191990835, 0.0019908236],
         [-0.0278093989, 2.2856487933, 0.0154731894]],
        "0. 44.593883 44.593883 2.8937 12.99 -0.3604 0.0191 0.3796 59.5248 0.016601 -93.411888 -93.40937 "
        "-93.408425 -93.431246 6.278",
    ),
}  # fmt: skip


def record_text(gdb_id: int) -> str:
    """One raw record in the dsgdb9nsd layout (tabs, Mulliken column, trailing lines, ``*^`` exponents)."""
    symbols, positions, props = MOLECULES[gdb_id]
    tokens = props.split()
    tokens[2] = f"{float(tokens[2]) / 1000!r}*^3"  # e.g. 157.70699 -> 0.15770699*^3
    lines = [str(len(symbols)), "gdb " + str(gdb_id) + "\t" + "\t".join(tokens) + "\t"]
    for s, p in zip(symbols, positions, strict=True):
        lines.append(f"{s}\t{p[0]:.10f}\t {p[1]:.10f}\t {p[2]:.10f}\t-0.1*^-1")
    lines += ["1341.307\t1341.3284", "C\tC\t", "InChI=1S/CH4/h1H4\tInChI=1S/CH4/h1H4"]
    return "\n".join(lines) + "\n"


UNCHARACTERIZED = (
    "\n".join(
        [
            "Molecules in QM9 that fail the geometry consistency check",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "  Index  SMILES",
        ]
    )
    + "\n    5   C#N   extra\n\n  footer line\n"
)


def write_folder(folder, ids=(1, 3, 5)):
    folder.mkdir(exist_ok=True)
    for i in ids:
        (folder / f"dsgdb9nsd_{i:06d}.xyz").write_text(record_text(i))
    return folder


def expected_targets(gdb_id: int) -> np.ndarray:
    """The 19 torch-geometric targets computed directly from MOLECULES (independent of the loader)."""
    symbols, _, props = MOLECULES[gdb_id]
    p = dict(
        zip(
            "A B C mu alpha homo lumo gap r2 zpve U0 U H G cv".split(), map(float, props.split()), strict=True
        )
    )
    ha = units.Hartree
    refs = {
        "H": [-0.500273, -0.498857, -0.497912, -0.510927],
        "C": [-37.846772, -37.845355, -37.844411, -37.861317],
        "N": [-54.583861, -54.582445, -54.581501, -54.598897],
        "O": [-75.064579, -75.063163, -75.062219, -75.079532],
    }
    atom = [p[k] - sum(refs[s][j] for s in symbols) for j, k in enumerate(("U0", "U", "H", "G"))]
    energies = [p[k] * ha for k in ("homo", "lumo", "gap")]
    thermo = [p[k] * ha for k in ("U0", "U", "H", "G")]
    return np.array(
        [p["mu"], p["alpha"], *energies, p["r2"], p["zpve"] * ha, *thermo, p["cv"], *(a * ha for a in atom)]
        + [p["A"], p["B"], p["C"]]
    )


def test_atom_refs_match_torch_geometric():
    # torch-geometric's QM9.atomref (eV) for U0 of H, C, N, O, F (it used 1 Ha = 27.21138602 eV)
    pyg_u0 = {1: -13.61312172, 6: -1029.86312267, 7: -1485.30251237, 8: -2042.61123593, 9: -2713.48485589}
    for z, value in pyg_u0.items():
        assert ATOM_REFS[z][0] * 27.21138602 == pytest.approx(value, abs=2e-6)


def test_raw_folder_values_units_and_targets(tmp_path):
    ds = load(write_folder(tmp_path / "raw"))
    assert len(ds) == 3 and ds.gdb_ids.tolist() == [1, 3, 5]
    assert ds.metadata["targets"]["names"] == list(TARGET_NAMES)
    for k, gdb_id in enumerate((1, 3, 5)):
        r = ds[k]
        np.testing.assert_allclose(r["targets"].numpy(), expected_targets(gdb_id), rtol=1e-12)
        symbols, positions, props = MOLECULES[gdb_id]
        np.testing.assert_allclose(r["positions"].numpy(), positions, atol=1e-10)
        assert r["energy"].item() == pytest.approx(float(props.split()[10]) * units.Hartree, rel=1e-14)
        assert "forces" not in r
    atoms = ds.to_atoms(0)
    assert atoms.get_chemical_formula() == "CH4"
    assert atoms.info["U0_atom"] == pytest.approx(expected_targets(1)[12])
    assert atoms.info["C"] == pytest.approx(157.70699)  # the *^ exponent was read
    # U0 atomization energy of methane is about -17.17 eV (-0.631 Ha)
    assert atoms.info["U0_atom"] == pytest.approx(-17.17, abs=0.01)


def test_energy_choice_and_bohr_conversion(tmp_path):
    ds = load_qm9(write_folder(tmp_path / "raw"), energy="U0_atom", bohr_to_angstrom=True)
    t = expected_targets(3)
    assert ds[1]["energy"].item() == pytest.approx(t[12])
    assert ds[1]["targets"][1].item() == pytest.approx(6.31 * units.Bohr**3)
    assert ds[1]["targets"][5].item() == pytest.approx(19.0002 * units.Bohr**2)
    assert ds.metadata["targets"]["units"][1] == "Å^3"
    with pytest.raises(ValueError, match="energy: must be one of"):
        load_qm9(tmp_path / "raw", energy="U7")


def test_tarball_and_uncharacterized(tmp_path):
    folder = write_folder(tmp_path / "raw")
    with tarfile.open(tmp_path / "dsgdb9nsd.xyz.tar.bz2", "w:bz2") as tar:
        for f in sorted(folder.iterdir()):
            tar.add(f, arcname=f.name)
    ds = load(tmp_path / "dsgdb9nsd.xyz.tar.bz2")
    direct = load(folder)
    assert len(ds) == 3
    for i in range(3):
        np.testing.assert_array_equal(ds[i]["targets"].numpy(), direct[i]["targets"].numpy())
    with pytest.raises(FileNotFoundError, match="uncharacterized.txt"):
        load(tmp_path / "dsgdb9nsd.xyz.tar.bz2", exclude_uncharacterized=True)
    (tmp_path / "uncharacterized.txt").write_text(UNCHARACTERIZED)
    kept = load(tmp_path / "dsgdb9nsd.xyz.tar.bz2", exclude_uncharacterized=True)
    assert kept.gdb_ids.tolist() == [1, 3] and kept.metadata["excluded_uncharacterized"] == 1
    (folder / "uncharacterized.txt").write_text(UNCHARACTERIZED)
    assert load(folder, exclude_uncharacterized=True).gdb_ids.tolist() == [1, 3]


def test_csv_layout_matches_raw(tmp_path):
    header = (
        "XYZ_file,Index,SMILES,InChi,N_atoms,Stoichiometry,Elements,XYZ_Ang,Mulliken_pop,Harmonic_Freq_cmi,"
        "RotA_GHz,RotB_GHz,RotC_GHz,Dipole_debye,Polarizability_bohr3,HOMO_au,LUMO_au,HOMO_LUMO_gap_au,R2_bohr2,"
        "ZPVE_au,InternalEnergy_0K_au,InternalEnergy_298K_au,Enthalphy_298K_au,GibbsFreeEnergy_298K_au,"
        "Heatcapacity_Cv_cal_mol_K"
    )
    rows = [header]
    for gdb_id in (1, 3):
        symbols, positions, props = MOLECULES[gdb_id]
        elements = "[" + ",".join(f"'{s}'" for s in symbols) + "]"
        xyz = "[" + ",".join("[" + ",".join(repr(v) for v in p) + "]" for p in positions) + "]"
        rows.append(
            f'"dsgdb9nsd_{gdb_id:06d}.xyz",{gdb_id},"C","InChI=1S",{len(symbols)},"[4,1,0,0,0]","{elements}",'
            f'"{xyz}","[0.]","[1.]",' + ",".join(props.split())
        )
    (tmp_path / "part.csv").write_text("\n".join(rows) + "\n")
    ds = load(tmp_path / "part.csv")
    raw = load(write_folder(tmp_path / "raw", ids=(1, 3)))
    assert ds.metadata["format"] == "qm9-csv" and len(ds) == 2
    for i in range(2):
        np.testing.assert_allclose(ds[i]["targets"].numpy(), raw[i]["targets"].numpy(), rtol=1e-12)
        np.testing.assert_allclose(ds[i]["positions"].numpy(), raw[i]["positions"].numpy(), atol=1e-10)
    (tmp_path / "bad.csv").write_text(header.replace("Polarizability_bohr3", "alpha") + "\n")
    with pytest.raises(DataError, match=r"bad.csv: missing field\(s\) \['Polarizability_bohr3'\]"):
        load(tmp_path / "bad.csv")


def test_bad_records(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    text = record_text(1).splitlines()
    (folder / "dsgdb9nsd_000001.xyz").write_text("\n".join(text[:4]) + "\n")
    with pytest.raises(DataError, match=r"dsgdb9nsd_000001.xyz, record gdb 1: field 'positions'"):
        load(folder)
    text[1] = text[1].replace("-40.47893", "nan")
    (folder / "dsgdb9nsd_000001.xyz").write_text("\n".join(text) + "\n")
    with pytest.raises(DataError, match=r"record gdb 1: field 'U0' is not finite"):
        load(folder)
    text = record_text(1).replace("\nH\t", "\nXx\t", 1)
    (folder / "dsgdb9nsd_000001.xyz").write_text(text)
    with pytest.raises(DataError, match=r"record gdb 1: field 'atomic_numbers'"):
        load(folder)
    write_folder(tmp_path / "raw")
    with tarfile.open(tmp_path / "qm9.tar.bz2", "w:bz2") as tar:
        tar.add(tmp_path / "raw", arcname="raw")
    data = (tmp_path / "qm9.tar.bz2").read_bytes()
    (tmp_path / "cut.tar.bz2").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cut.tar.bz2"):
        load(tmp_path / "cut.tar.bz2")


def _direct_parse(path):
    lines = path.read_text().splitlines()
    n = int(lines[0])
    props = [float(t.replace("*^", "e")) for t in lines[1].split()[2:17]]
    pos = np.array([[float(t.replace("*^", "e")) for t in line.split()[1:4]] for line in lines[2 : 2 + n]])
    return props, pos


def test_shared_qm9(shared_data):
    folder = shared_data / "qm9"
    raw = load(folder / "raw_xyz")
    assert len(raw) == 20
    for k, gdb_id in enumerate(raw.gdb_ids):
        props, pos = _direct_parse(folder / "raw_xyz" / f"dsgdb9nsd_{gdb_id:06d}.xyz")
        np.testing.assert_allclose(raw[k]["positions"].numpy(), pos)
        assert raw[k]["energy"].item() == pytest.approx(props[10] * units.Hartree, rel=1e-14)
        assert raw[k]["targets"][16].item() == props[0]
    csv = load(folder / "qm9pack_first100.csv")
    assert len(csv) == 100
    by_id = dict(zip(csv.gdb_ids.tolist(), range(len(csv)), strict=True))
    for k, gdb_id in enumerate(raw.gdb_ids[:10].tolist()):
        np.testing.assert_array_equal(csv[by_id[gdb_id]]["targets"].numpy(), raw[k]["targets"].numpy())
    # the schnetpack ASE db holds QM9's atomref table and the same U0 values (Hartree)
    import ase.db

    db = ase.db.connect(folder / "schnetpack_test_qm9.db")
    refs = db.metadata["atomrefs"]
    for z, values in ATOM_REFS.items():
        for j, name in enumerate(("energy_U0", "energy_U", "enthalpy_H", "free_energy")):
            assert refs[name][z] == pytest.approx(values[j], abs=1e-9)
    for row in db.select():
        gdb_id = row.id
        if gdb_id <= 10:
            assert raw[gdb_id - 1]["energy"].item() == pytest.approx(
                float(row.data["energy_U0"][0]) * units.Hartree
            )
