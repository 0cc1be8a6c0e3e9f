# JupyterLab on this repository (`make lab`, scripts/lab.sh puts this folder first on JUPYTER_CONFIG_PATH;
# tests/test_lab.py starts it the same way and checks each setting below).
from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager

c = get_config()  # noqa: F821 (defined by traitlets when it loads this file)

# notebooks/*.py are jupytext percent-format notebooks. jupytext's contents manager serves a .py file as a
# notebook model (GET /api/contents/notebooks/<name>.py?type=notebook) and writes a saved notebook back as
# percent-format text (outputs are not kept in the .py). jupytext's own server extension, enabled by the
# <venv>/etc/jupyter/jupyter_server_config.d/jupytext.json that pip installs with jupytext, would derive the
# same class; naming it here makes the repository's setup not depend on that file (the extension then only
# logs "already - OK"). In JupyterLab: right-click a notebooks/*.py → Open With → Notebook (double-click
# keeps opening .py files, src/ and tests/ included, in the text editor).
c.ServerApp.contents_manager_class = "jupytext.AsyncTextFileContentsManager"

# A save from JupyterLab leaves the file's header as the repository writes it: without this filter jupytext adds
# a `text_representation` block (format version, jupytext version) to the header on the first save, and sets
# the filter itself in the header if it is not filtered too. Cells and the rest of the header are written
# back as they were read.
c.ContentsManager.notebook_metadata_filter = "-jupytext.text_representation,-jupytext.notebook_metadata_filter"


class RepoRootKernelManager(AsyncMappingKernelManager):
    """Start every kernel in the server's root (the repository), not in the notebook's folder.

    The workflow runs each notebook with the repository as working directory (``diffact notebook`` →
    papermill ``cwd``), so the parameters and paths in notebooks/*.py (``results/...``, ``paper_figures/...``)
    are relative to it; the same holds for the executed notebooks in results/notebooks/.
    """

    def cwd_for_path(self, path, **kwargs):
        return self.root_dir


c.ServerApp.kernel_manager_class = RepoRootKernelManager
