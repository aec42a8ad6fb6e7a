// pair_style mlip: see pair_mlip.h and lammps/README.md.
//
// Each step, every rank builds the graph of its local + ghost atoms (edges j -> i for all pairs closer
// than r_max, from a full neighbour list that includes the ghosts' neighbours), runs the package with
// energy_mask = 1 on local atoms and 0 on ghosts, adds the forces to local and ghost atoms (LAMMPS'
// reverse communication, newton_pair on, sends the ghosts' forces to their owners) and tallies energy,
// per-atom energy and the per-atom virial. Ghosts reach num_layers * r_max (+ skin) past the subdomain,
// so every local atom's energy sees its full receptive field.

#include "pair_mlip.h"

#include "atom.h"
#include "comm.h"
#include "domain.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "update.h"
#include "utils.h"

#include <torch/torch.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>

using namespace LAMMPS_NS;

namespace {

const char *const ELEMENTS[] = {
    "X",  "H",  "He", "Li", "Be", "B",  "C",  "N",  "O",  "F",  "Ne", "Na", "Mg", "Al", "Si", "P",  "S",
    "Cl", "Ar", "K",  "Ca", "Sc", "Ti", "V",  "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge", "As",
    "Se", "Br", "Kr", "Rb", "Sr", "Y",  "Zr", "Nb", "Mo", "Tc", "Ru", "Rh", "Pd", "Ag", "Cd", "In", "Sn",
    "Sb", "Te", "I",  "Xe", "Cs", "Ba", "La", "Ce", "Pr", "Nd", "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho",
    "Er", "Tm", "Yb", "Lu", "Hf", "Ta", "W",  "Re", "Os", "Ir", "Pt", "Au", "Hg", "Tl", "Pb", "Bi", "Po",
    "At", "Rn", "Fr", "Ra", "Ac", "Th", "Pa", "U",  "Np", "Pu", "Am", "Cm", "Bk", "Cf", "Es", "Fm", "Md",
    "No", "Lr", "Rf", "Db", "Sg", "Bh", "Hs", "Mt", "Ds", "Rg", "Cn", "Nh", "Fl", "Mc", "Lv", "Ts", "Og"};
const int NUM_ELEMENTS = sizeof(ELEMENTS) / sizeof(ELEMENTS[0]);

int atomic_number(const std::string &symbol)
{
  for (int z = 1; z < NUM_ELEMENTS; ++z)
    if (symbol == ELEMENTS[z]) return z;
  return 0;
}

std::string first_line(const std::string &text)
{
  return text.substr(0, text.find('\n'));
}

}    // namespace

PairMLIP::PairMLIP(LAMMPS *lmp) :
    Pair(lmp), r_max(0.0), num_layers(0), dtype(c10::kDouble), device(c10::kCPU)
{
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  ghostneigh = 1;
  no_virial_fdotr_compute = 1;    // the package returns the virial (per atom and in total)
  centroidstressflag = CENTROID_NOTAVAIL;
}

PairMLIP::~PairMLIP()
{
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
    memory->destroy(cutghost);
  }
}

void PairMLIP::allocate()
{
  allocated = 1;
  int n = atom->ntypes + 1;
  memory->create(setflag, n, n, "pair:setflag");
  memory->create(cutsq, n, n, "pair:cutsq");
  memory->create(cutghost, n, n, "pair:cutghost");
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) setflag[i][j] = 0;
}

void PairMLIP::settings(int narg, char **)
{
  if (narg != 0) error->all(FLERR, "Illegal pair_style mlip command: it takes no arguments");
  if (strcmp(update->unit_style, "metal") != 0)
    error->all(FLERR, "pair_style mlip requires 'units metal' (eV, Angstrom, ps); this input has units {}",
               update->unit_style);
}

// Reads and checks the package's metadata, then loads it; every failure is a LAMMPS error naming the
// file and the field.
void PairMLIP::load_package(const std::string &path)
{
  if (!std::ifstream(path).good())
    error->all(FLERR, "pair_coeff mlip: cannot open model package {}", path);
  std::unordered_map<std::string, std::string> meta;
  try {
    meta = torch::inductor::AOTIModelPackageLoader::load_metadata_from_package(path, "model");
  } catch (const std::exception &e) {
    error->all(FLERR, "pair_coeff mlip: {} is not a readable .pt2 package ({})", path,
               first_line(e.what()));
  }
  auto field = [&](const std::string &key) -> std::string {
    auto it = meta.find(key);
    if (it == meta.end())
      error->all(FLERR, "pair_coeff mlip: {} has no metadata field '{}' (not made by mlip compile?)",
                 path, key);
    return it->second;
  };
  if (field("mlip_format") != "1")
    error->all(FLERR, "pair_coeff mlip: {}: mlip_format '{}' is not supported (this pair style reads 1)",
               path, field("mlip_format"));
  const std::string dev = field("device");
  if (dev == "cpu") {
    device = c10::Device(c10::kCPU);
  } else if (dev == "cuda") {
    if (!torch::cuda::is_available())
      error->all(FLERR,
                 "pair_coeff mlip: {}: device 'cuda', but no CUDA device is usable by this libtorch; "
                 "compile the model for cpu (mlip compile --device cpu)",
                 path);
    device = c10::Device(c10::kCUDA, 0);
  } else {
    error->all(FLERR, "pair_coeff mlip: {}: device '{}' is not supported (cpu or cuda)", path, dev);
  }
  const std::string dt = field("dtype");
  if (dt == "float64")
    dtype = c10::kDouble;
  else if (dt == "float32")
    dtype = c10::kFloat;
  else
    error->all(FLERR, "pair_coeff mlip: {}: dtype '{}' is not supported (float64 or float32)", path, dt);
  const std::string tv = field("torch_version");
  const std::string ours = std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR);
  if (tv.rfind(ours + ".", 0) != 0)
    error->all(FLERR, "pair_coeff mlip: {}: torch_version '{}' differs from this plugin's libtorch {} "
               "(compile the model with the torch this plugin was built against)", path, tv, ours);
  try {
    r_max = std::stod(field("r_max"));
    num_layers = std::stoi(field("num_layers"));
    species_z.clear();
    std::stringstream list(field("species"));
    for (std::string item; std::getline(list, item, ',');) species_z.push_back(std::stoi(item));
  } catch (const std::logic_error &) {
    error->all(FLERR, "pair_coeff mlip: {}: unreadable r_max, num_layers or species metadata", path);
  }
  if (r_max <= 0.0 || num_layers < 1 || species_z.empty())
    error->all(FLERR, "pair_coeff mlip: {}: r_max {} / num_layers {} / species '{}' out of range", path,
               r_max, num_layers, field("species"));
  try {
    package = std::make_unique<torch::inductor::AOTIModelPackageLoader>(path, "model", false, 1,
                                                                         device.index());
  } catch (const std::exception &e) {
    error->all(FLERR, "pair_coeff mlip: cannot load {} ({})", path, first_line(e.what()));
  }
  package_path = path;
}

void PairMLIP::coeff(int narg, char **arg)
{
  if (!allocated) allocate();
  const int ntypes = atom->ntypes;
  if (narg != 3 + ntypes)
    error->all(FLERR, "pair_coeff mlip: expected '* * model.pt2' and {} element symbols, got {} args",
               ntypes, narg);
  if (strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
    error->all(FLERR, "pair_coeff mlip: the type arguments must be '* *'");
  load_package(arg[2]);

  std::string known;
  for (int z : species_z) known += std::string(known.empty() ? "" : " ") + ELEMENTS[z > 0 && z < NUM_ELEMENTS ? z : 0];
  type_species.assign(ntypes + 1, -1);
  for (int t = 1; t <= ntypes; ++t) {
    const std::string symbol = arg[2 + t];
    const int z = atomic_number(symbol);
    if (z == 0) error->all(FLERR, "pair_coeff mlip: '{}' (type {}) is not an element symbol", symbol, t);
    auto it = std::find(species_z.begin(), species_z.end(), z);
    if (it == species_z.end())
      error->all(FLERR, "pair_coeff mlip: element {} (type {}) is not in the species of {} ({})", symbol,
                 t, package_path, known);
    type_species[t] = it - species_z.begin();
  }
  for (int i = 1; i <= ntypes; ++i)
    for (int j = i; j <= ntypes; ++j) setflag[i][j] = 1;
}

void PairMLIP::init_style()
{
  if (strcmp(update->unit_style, "metal") != 0)
    error->all(FLERR, "pair_style mlip requires 'units metal'; this input has units {}", update->unit_style);
  if (force->newton_pair == 0)
    error->all(FLERR, "pair_style mlip requires newton_pair on (ghost forces go back by reverse comm)");
  if (!package) error->all(FLERR, "pair_style mlip: no model package loaded (pair_coeff * * model.pt2 ...)");
  neighbor->add_request(this, NeighConst::REQ_FULL | NeighConst::REQ_GHOST);
  // A local atom's energy depends on atoms num_layers hops away: ghosts must reach that far (plus the
  // skin, as atoms move between neighbour-list builds).
  const double halo = num_layers * r_max + neighbor->skin;
  if (comm->cutghostuser < halo) comm->cutghostuser = halo;
}

double PairMLIP::init_one(int i, int j)
{
  cutghost[i][j] = cutghost[j][i] = r_max;
  return r_max;
}

void PairMLIP::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;
  if (nall == 0) return;
  double **x = atom->x;
  double **f = atom->f;
  const int *type = atom->type;

  // Edges j -> i (row 0 source, row 1 destination). Messages into atom i matter only if i's features
  // after layers 1 .. num_layers-1 reach a local atom, i.e. if i lies within (num_layers - 1) r_max of
  // the subdomain (+ skin: local atoms drift outside it by up to skin/2 between list builds); edges into
  // the outer ghosts are dropped (exact: they do not change the local energies). Triclinic: all kept.
  std::vector<int64_t> src, dst;
  const double cut2 = r_max * r_max;
  const double reach = (num_layers - 1) * r_max + neighbor->skin;
  const double *lo = domain->sublo, *hi = domain->subhi;
  auto receives = [&](int i) {
    if (i < nlocal || domain->triclinic) return true;
    for (int k = 0; k < 3; ++k)
      if (x[i][k] < lo[k] - reach || x[i][k] > hi[k] + reach) return false;
    return true;
  };
  const int nlist = list->inum + list->gnum;
  for (int ii = 0; ii < nlist; ++ii) {
    const int i = list->ilist[ii];
    if (!receives(i)) continue;
    const int *jlist = list->firstneigh[i];
    for (int jj = 0; jj < list->numneigh[i]; ++jj) {
      const int j = jlist[jj] & NEIGHMASK;
      const double dx = x[i][0] - x[j][0], dy = x[i][1] - x[j][1], dz = x[i][2] - x[j][2];
      if (dx * dx + dy * dy + dz * dz < cut2) {
        src.push_back(j);
        dst.push_back(i);
      }
    }
  }
  const bool padded = src.empty();    // the package needs E >= 1: one self edge longer than r_max
  if (padded) {
    src.push_back(0);
    dst.push_back(0);
  }
  const int64_t nedge = src.size();

  const auto host64 = torch::TensorOptions().dtype(torch::kFloat64);
  const auto hostint = torch::TensorOptions().dtype(torch::kInt64);
  const auto on = torch::TensorOptions().dtype(dtype).device(device);
  torch::Tensor positions = torch::from_blob(&x[0][0], {nall, 3}, host64).to(on);
  torch::Tensor species = torch::empty({nall}, hostint);
  int64_t *s = species.data_ptr<int64_t>();
  for (int i = 0; i < nall; ++i) s[i] = type_species[type[i]];
  torch::Tensor edges = torch::empty({2, nedge}, hostint);
  std::copy(src.begin(), src.end(), edges.data_ptr<int64_t>());
  std::copy(dst.begin(), dst.end(), edges.data_ptr<int64_t>() + nedge);
  torch::Tensor shifts = torch::zeros({nedge, 3}, on);
  if (padded) shifts.index_put_({0, 0}, 2.0 * r_max);
  torch::Tensor mask = torch::zeros({nall}, on);
  mask.narrow(0, 0, nlocal).fill_(1.0);

  std::vector<at::Tensor> out;
  try {
    out = package->run({positions, species.to(device), edges.to(device), shifts, mask});
  } catch (const std::exception &e) {
    error->one(FLERR, "pair_style mlip: {} failed on {} atoms, {} edges ({})", package_path, nall,
               nedge, first_line(e.what()));
  }
  if (out.size() != 4) error->one(FLERR, "pair_style mlip: {} returned {} outputs, expected 4", package_path, out.size());
  const torch::Tensor energy = out[0].to(torch::kCPU, torch::kFloat64);
  const torch::Tensor atom_e = out[1].to(torch::kCPU, torch::kFloat64).contiguous();
  const torch::Tensor forces = out[2].to(torch::kCPU, torch::kFloat64).contiguous();
  const torch::Tensor avir = out[3].to(torch::kCPU, torch::kFloat64).contiguous();

  const double *fp = forces.data_ptr<double>();
  for (int i = 0; i < nall; ++i)
    for (int k = 0; k < 3; ++k) f[i][k] += fp[3 * i + k];
  if (eflag_global) eng_vdwl += energy.item<double>();
  if (eflag_atom) {
    const double *ep = atom_e.data_ptr<double>();
    for (int i = 0; i < nlocal; ++i) eatom[i] += ep[i];
  }
  if (vflag_either) {
    // LAMMPS' Voigt order xx yy zz xy xz yz from the row-major 3x3 per-atom virial.
    const int voigt[6] = {0, 4, 8, 1, 2, 5};
    const double *vp = avir.data_ptr<double>();
    for (int i = 0; i < nall; ++i)
      for (int k = 0; k < 6; ++k) {
        const double w = vp[9 * i + voigt[k]];
        if (vflag_global) virial[k] += w;
        if (vflag_atom) vatom[i][k] += w;
      }
  }
}
