"""ros2 launch inerf_ros localize.launch.py [nerf_model:=DIR] [device:=cuda] [use_posecnn:=false] ...

The node list, arguments and remappings come from ``inerf_ros.launch_description`` (shared with
``inerf-ros launch localize``). ``ros2 launch -s`` lists the arguments.
"""


def generate_launch_description():
    # launch / launch_ros are imported here only: the PyPI ROS 2 environment has neither, and the
    # tests import this file to check it against the shared description.
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, GroupAction, OpaqueFunction
    from launch.conditions import IfCondition
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node, SetParameter

    from inerf_ros.launch_description import NODES, REMAPPINGS, TF_REMAPPINGS, check_parameters, launch_arguments

    actions = [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description)
               for a in launch_arguments()]
    remappings = [(topic, LaunchConfiguration(arg)) for topic, arg in REMAPPINGS.items()]
    remappings += TF_REMAPPINGS
    nodes = [SetParameter(name="use_sim_time", value=LaunchConfiguration("use_sim_time"))]
    for spec in NODES:
        overrides = {param: LaunchConfiguration(arg) for param, arg in spec.parameters.items()}
        nodes.append(Node(
            package="inerf_ros", executable=spec.name, name=spec.name, output="screen",
            parameters=[LaunchConfiguration("params_file"), overrides], remappings=remappings,
            arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
            condition=IfCondition(LaunchConfiguration(spec.condition)) if spec.condition else None))
    # The parameter file is known only once the arguments are: checked then, before any node starts.
    check = OpaqueFunction(function=lambda context: check_parameters(dict(context.launch_configurations)) or [])
    return LaunchDescription(actions + [check, GroupAction(nodes)])
