// pair_style mlip: a LAMMPS pair style that evaluates an mlip-torch model compiled by `mlip compile`
// (an AOTInductor `.pt2` package, contract v1) on each rank's graph of local + ghost atoms.
#ifndef LMP_PAIR_MLIP_H
#define LMP_PAIR_MLIP_H

#include "pair.h"

#include <memory>
#include <string>
#include <vector>

#include <ATen/Tensor.h>
#include <c10/core/Device.h>

namespace torch::inductor {
class AOTIModelPackageLoader;
}

namespace LAMMPS_NS {

class PairMLIP : public Pair {
 public:
  explicit PairMLIP(class LAMMPS *);
  ~PairMLIP() override;
  void compute(int, int) override;
  void settings(int, char **) override;
  void coeff(int, char **) override;
  void init_style() override;
  double init_one(int, int) override;

 private:
  void allocate();
  void load_package(const std::string &path);

  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> package;
  std::string package_path;
  std::vector<int> species_z;    // atomic number of each model species index
  std::vector<int64_t> type_species;    // LAMMPS type (1..ntypes) -> species index
  double r_max;
  int num_layers;
  c10::ScalarType dtype;
  c10::Device device;
};

}    // namespace LAMMPS_NS

#endif
