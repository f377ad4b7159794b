"""Make docs/dashboard.png: a two-node cluster at work (tasks running and finished, a
failure, an actor, a task no node can run), photographed by headless chromium.

    .venv/bin/python docs/dashboard_screenshot.py [docs/dashboard.png]

Needs Debian's chromium and chromedriver and selenium, as the browser test does.
"""
import os
import random
import sys
import time

import numpy as np
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

import actorscoop as asc
from actorscoop.testing import Cluster


@asc.remote
def simulate(seed):
    rng = random.Random(seed)
    time.sleep(rng.uniform(0.4, 2.0))
    return seed


@asc.remote
def preprocess(i):
    time.sleep(random.uniform(0.1, 0.4))
    return i


@asc.remote
def fit(i):
    if i % 17 == 5:
        raise ValueError(f"the model diverged on batch {i}: loss is nan")
    time.sleep(0.2)
    return i


@asc.remote(num_gpus=1)
def train_on_gpu(data):
    return data


@asc.remote
class ParameterServer:
    def __init__(self):
        self.version = 0

    def update(self, grad):
        self.version += 1
        return self.version


def main(out):
    with Cluster(nodes=[{"num_cpus": 2}, {"num_cpus": 2, "resources": {"big_mem": 1}}],
                 object_store_memory=512 << 20, include_dashboard=True) as c:
        asc.init(address=c.address)
        ps = ParameterServer.options(name="params").remote()
        data = asc.put(np.zeros(40 << 20, dtype=np.uint8))  # 40 MiB in the head's store
        asc.get([ps.update.remote(i) for i in range(30)])
        asc.get([preprocess.remote(i) for i in range(40)])
        fits = [fit.remote(i) for i in range(30)]
        asc.wait(fits, num_returns=len(fits), timeout=60)
        pending = train_on_gpu.remote(data)
        sims = [simulate.remote(i) for i in range(80)]
        asc.wait(sims, num_returns=20, timeout=120)
        opts = webdriver.ChromeOptions()
        opts.binary_location = "/usr/bin/chromium"
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1400,1400", "--hide-scrollbars", "--force-device-scale-factor=1"):
            opts.add_argument(arg)
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
        try:
            driver.get(c.dashboard_url)
            deadline = time.time() + 30
            while time.time() < deadline and not driver.execute_script(
                    "return state.tasks && state.timeline && state.drawn.length > 0"):
                time.sleep(0.2)
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.set_window_size(1400, height + 20)
            time.sleep(2.5)  # two more polls at the new size, for the picture
            driver.save_screenshot(out)
        finally:
            driver.quit()
        asc.cancel(pending)
        asc.shutdown()
    print(f"wrote {out}")


DEMO_DIR = "/tmp/ml-pipeline"  # where the workload runs from: the tracebacks on the page
# name a user's script there, not this checkout's path on the machine that made the picture


if __name__ == "__main__":
    out = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                          os.path.join(os.path.dirname(__file__), "dashboard.png"))
    here = os.path.abspath(__file__)
    if os.path.dirname(here) != DEMO_DIR:
        import shutil
        import subprocess
        os.makedirs(DEMO_DIR, exist_ok=True)
        demo = os.path.join(DEMO_DIR, "pipeline.py")
        shutil.copy(here, demo)
        try:
            sys.exit(subprocess.run([sys.executable, demo, out], cwd=DEMO_DIR).returncode)
        finally:
            shutil.rmtree(DEMO_DIR, ignore_errors=True)
    main(out)
