# A ROS 2 + GPU vehicle image with fsmde_ros, installed the way README "On a machine with ROS 2 installed" says:
# rosdep for the ROS packages, a venv that sees them for the Python dependencies (PEP 668), colcon with that venv.
#   docker build -t fsmde_ros .
#   docker run --rm --gpus all --net host --ipc host fsmde_ros \
#       ros2 launch fsmde_ros surround_depth.launch.py rig:=nuscenes
# The GPU comes from the NVIDIA container toolkit (driver) and the `gpu` extra's wheels (ONNX Runtime GPU,
# TensorRT and their CUDA libraries); engines are built on first start into ~/.cache/fsmde_ros/engines (mount a
# volume there to keep them across containers). --ipc host: Fast DDS shared memory between containers.
ARG ROS_DISTRO=kilted
FROM ros:${ROS_DISTRO}-ros-base
ARG ROS_DISTRO
SHELL ["/bin/bash", "-c"]
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-venv python3-pip python3-colcon-common-extensions \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /ws
COPY . src/fsmde_ros
RUN apt-get update && rosdep update --rosdistro ${ROS_DISTRO} \
 && rosdep install --from-paths src --ignore-src -y \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv --system-site-packages venv && touch venv/COLCON_IGNORE \
 && venv/bin/pip install --no-cache-dir -c src/fsmde_ros/constraints.txt "./src/fsmde_ros[gpu]"
RUN source /opt/ros/${ROS_DISTRO}/setup.bash && source venv/bin/activate \
 && python -m colcon build --packages-select fsmde_ros
ENV RMW_IMPLEMENTATION=rmw_fastrtps_cpp \
    FASTDDS_DEFAULT_PROFILES_FILE=/ws/install/fsmde_ros/share/fsmde_ros/config/fastdds_shm.xml
RUN printf '#!/bin/bash\nsource /opt/ros/%s/setup.bash\nsource /ws/venv/bin/activate\nsource /ws/install/setup.bash\nexec "$@"\n' \
      "${ROS_DISTRO}" > /entrypoint.sh && chmod +x /entrypoint.sh
ENTRYPOINT ["/entrypoint.sh"]
CMD ["ros2", "launch", "fsmde_ros", "surround_depth.launch.py"]
