"""ros2 launch inerf_ros localize.launch.py [nerf_model:=DIR] [device:=cuda] [use_posecnn:=false] ...

The node list, arguments and remappings come from ``inerf_ros.launch_description`` (shared with
``inerf-ros launch localize``). ``ros2 launch -s`` lists the arguments.
"""


def generate_launch_description():
    # launch / launch_ros are imported here only: the PyPI ROS 2 environment has neither, and the
    # tests import this file to check it against the shared description.
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch_ros.actions import Node

    from inerf_ros.launch_description import check_parameters, launch_arguments, resolve

    def nodes(context):
        # The nodes, their overrides and models are known only once the arguments are (a workspace's
        # params file names its own models): resolved then, by the code `inerf-ros launch` runs too,
        # after the parameter file is checked and before any node starts.
        values = dict(context.launch_configurations)
        check_parameters(values)
        nodes_to_start, remaps = resolve(values)
        return [Node(package="inerf_ros", executable=spec.name, name=spec.name, output="screen",
                     parameters=[values["params_file"], overrides], remappings=remaps,
                     arguments=["--ros-args", "--log-level", values["log_level"]])
                for spec, overrides in nodes_to_start]

    actions = [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description)
               for a in launch_arguments()]
    return LaunchDescription(actions + [OpaqueFunction(function=nodes)])
